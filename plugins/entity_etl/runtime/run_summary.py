"""The summary of one entity run, built from its records in the run store (no Airflow here).

The teardown task stores it in the run's record when it closes the run (``run_records.close_run``);
the DAG-run note (``orchestration/run_note.py``) and the Entities page (``entity_etl/ui``) read it.
Every figure comes from the stages' own statistics, so the note says what the stages recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from entity_etl.runtime.run_store import RUN, StageRecord

#: The key of the summary in the run record's ``stats``.
SUMMARY_KEY = "summary"


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return round((dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds(), 3)
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def build_summary(
    records: Iterable[StageRecord],
    *,
    interval: tuple[str, str] | None,
    status: str,
    started_at: str,
    ended_at: str,
) -> dict[str, Any]:
    """The run's figures from its stage records: a figure is ``None`` when the stage that gives it
    did not record it (not run, failed, or an entity without that stage)."""
    stages: Mapping[str, StageRecord] = {r.stage: r for r in records if r.stage != RUN}

    def stat(stage: str, key: str) -> Any:
        record = stages.get(stage)
        return record.stats.get(key) if record is not None and record.status == "succeeded" else None

    def detail(stage: str, key: str) -> Any:
        details = stat(stage, "details")
        return details.get(key) if isinstance(details, dict) else None

    resumed = 0
    warnings = []
    for record in stages.values():
        found = record.stats.get("details")
        details: dict[str, Any] = found if isinstance(found, dict) else {}
        resumed += (_int(details.get("resumed_chunks")) or 0) + (_int(details.get("resumed_parts")) or 0)
        if details.get("warning"):
            warnings.append(str(details["warning"]))
    return {
        "status": status,
        "interval_start": interval[0] if interval else None,
        "interval_end": interval[1] if interval else None,
        "rows_extracted": _int(stat("extract", "rows_out")),
        "duplicates_removed": _int(stat("dedupe", "duplicates_removed")),
        "rows_loaded": _int(stat("load_target", "rows_out")),
        "target_rows": _int(detail("load_target", "target_rows")),
        "kept_newer": _int(detail("load_target", "kept_newer")),
        "duration_s": _seconds_between(started_at, ended_at),
        "resumed_chunks": resumed,
        "stages": {name: record.status for name, record in sorted(stages.items())},
        "warnings": warnings,
    }


def _figure(value: Any) -> str:
    return "–" if value is None else f"{value:,}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def format_note(entity: str, summary: Mapping[str, Any]) -> str:
    """The DAG-run note (Markdown, as the Airflow UI renders notes)."""
    lines = [
        f"**{entity}: run {summary.get('status', '?')}**",
        "",
        f"- interval: {summary.get('interval_start') or '?'} → {summary.get('interval_end') or '?'}",
        f"- rows extracted: {_figure(summary.get('rows_extracted'))}",
        f"- duplicates removed: {_figure(summary.get('duplicates_removed'))}",
        f"- rows loaded: {_figure(summary.get('rows_loaded'))}",
        f"- target rows: {_figure(summary.get('target_rows'))}",
        f"- kept newer: {_figure(summary.get('kept_newer'))}",
        f"- duration: {_duration(summary.get('duration_s'))}",
        f"- resumed chunks: {_figure(summary.get('resumed_chunks'))}",
    ]
    failed = [name for name, status in (summary.get("stages") or {}).items() if status != "succeeded"]
    if failed:
        lines.append(f"- not succeeded: {', '.join(failed)}")
    lines.extend(f"- ⚠ {warning}" for warning in summary.get("warnings") or [])
    return "\n".join(lines)


def stored_summary(record: StageRecord | None) -> dict[str, Any] | None:
    """The summary a closed run record holds, if any."""
    if record is None:
        return None
    summary = record.stats.get(SUMMARY_KEY)
    return summary if isinstance(summary, dict) else None
