"""The trend chart: daily NPS and CSAT (lines) and answers (bars) over the days ending at a day, as PNG.

matplotlib (the optional extra ``nps``), object-oriented API with the Agg canvas: no pyplot, no global
state, no display, safe in a worker thread; imported only when a chart is drawn. The same points give
the same PNG bytes (no timestamp in the file), so a rerun of a day rewrites an identical chart.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Sequence

from entity_etl.nps.report_table import TrendPoint
from entity_etl.nps.settings import RatingScale

NOT_COMPARABLE = "NPS on a {span} scale is not comparable with 0-10 NPS benchmarks."


def render_trend_png(points: Sequence[TrendPoint], *, end_day: dt.date, days: int, scale: RatingScale) -> bytes:
    """A PNG of the ``days`` days ending at ``end_day``; a day without a point is a gap in the lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    start = end_day - dt.timedelta(days=days - 1)
    calendar = [start + dt.timedelta(days=i) for i in range(days)]
    by_day = {p.day: p for p in points if start <= p.day <= end_day}
    nan = math.nan
    nps = [float(p.nps) if (p := by_day.get(d)) and p.nps is not None else nan for d in calendar]
    csat = [float(p.csat_pct) if (p := by_day.get(d)) and p.csat_pct is not None else nan for d in calendar]
    answers = [p.responses if (p := by_day.get(d)) else 0 for d in calendar]

    x = [float(v) for v in date2num(calendar)]  # matplotlib's day numbers
    fig = Figure(figsize=(11, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.twinx()
    bars.bar(x, answers, width=0.8, color="#d9d9d9", label="answers (right axis)")
    bars.set_ylabel("answers per day")
    bars.set_ylim(0, max([*answers, 1]) * 2.5)  # the bars in the lower part, under the lines
    ax.set_zorder(bars.get_zorder() + 1)  # the lines over the bars
    ax.patch.set_visible(False)
    marker = "o" if days <= 31 else None
    ax.plot(x, nps, color="#1f4e79", linewidth=2, marker=marker, markersize=3, label="NPS")
    ax.plot(
        x, csat, color="#2e7d32", linewidth=1.5, linestyle="--", marker=marker, markersize=3, label="CSAT % (top-2-box)"
    )
    ax.axhline(0, color="#888888", linewidth=0.8)
    ax.set_ylim(-105, 105)
    ax.set_ylabel("NPS (−100 … 100) / CSAT %")
    ax.set_xlim(x[0] - 1, x[-1] + 1)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.grid(axis="y", color="#eeeeee")
    latest = by_day.get(end_day)
    if latest is None:
        headline = "not computed"
    elif latest.responses == 0:
        headline = "no answers"
    else:
        headline = f"NPS {latest.nps}, CSAT {latest.csat_pct}% ({latest.responses} answers)"
    ax.set_title(
        f"Survey NPS and CSAT, {days} days to {end_day.isoformat()}\n{end_day.isoformat()}: {headline}", loc="left"
    )
    handles = ax.get_legend_handles_labels()
    bar_handles = bars.get_legend_handles_labels()
    ax.legend(handles[0] + bar_handles[0], handles[1] + bar_handles[1], loc="lower left", fontsize=8, frameon=False)
    fig.text(
        0.005,
        0.005,
        f"Scale {scale.describe()}. " + NOT_COMPARABLE.format(span=scale.span),
        fontsize=7,
        color="#555555",
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
