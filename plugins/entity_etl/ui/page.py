"""The Entities page as one HTML document (no script: it renders inside the Airflow UI's frame)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from entity_etl.ui.overview import EntityRow
from entity_etl.ui.sparkline import sparkline

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #1f2933; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e4e7eb; white-space: nowrap; }
td.interval { white-space: normal; min-width: 14em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.succeeded { color: #157f3b; } .failed { color: #c81e1e; } .running { color: #1d4ed8; }
.never { color: #7b8794; } .problem { color: #c81e1e; font-size: 12px; } .spark { color: #3e4c59; }
caption { text-align: left; font-size: 13px; color: #52606d; padding-bottom: 8px; }
"""


def _num(value: float | None, fmt: str = "{:,}") -> str:
    return "–" if value is None else fmt.format(value)


def _cell(row: EntityRow) -> str:
    info = row.info
    status_class = row.status if row.status in ("succeeded", "failed", "running") else "never"
    interval = f"{row.interval[0]} → {row.interval[1]}" if row.interval else "–"
    problem = f'<div class="problem">{escape(info.problem)}</div>' if info.problem else ""
    dag = escape(info.dag_id, quote=True)
    return (
        f'<tr data-entity="{escape(info.entity, quote=True)}">'
        f'<td><a href="../dags/{dag}" target="_top">{escape(info.entity)}</a>{problem}</td>'
        f"<td>{escape(info.schedule)}</td>"
        f'<td title="{escape(row.last_run_id, quote=True)}">{escape(row.last_started[:19].replace("T", " ")) or "–"}</td>'
        f'<td class="status {status_class}">{escape(row.status)}</td>'
        f'<td class="interval">{escape(interval)}</td>'
        f'<td class="num rows-loaded">{_num(row.rows_loaded)}</td>'
        f'<td class="num duration">{_num(row.duration_s, "{:.1f} s")}</td>'
        f"<td>{sparkline(row.rows_trend, title=f'{info.entity}: rows loaded, last {len(row.rows_trend)} runs')}</td>"
        f"<td>{sparkline(row.duration_trend, title=f'{info.entity}: duration, last {len(row.duration_trend)} runs')}</td>"
        "</tr>"
    )


def render_page(rows: Sequence[EntityRow], *, store: str) -> str:
    body = "\n".join(_cell(row) for row in rows)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Entities</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<table><caption>{len(rows)} entities; run store: {escape(store)}</caption>"
        "<thead><tr><th>Entity</th><th>Schedule</th><th>Last run (UTC)</th><th>Status</th><th>Interval</th>"
        "<th>Rows loaded</th><th>Duration</th><th>Rows trend</th><th>Duration trend</th></tr></thead>"
        f"<tbody>\n{body}\n</tbody></table></body></html>"
    )
