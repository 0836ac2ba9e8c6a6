"""The run's stage statistics: from XCom when the callback can read it, else from the run store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from entity_etl.orchestration.notify.context import field, xcom


def _stage_records(entity: str | None, run_id: Any) -> list[Any]:
    """The run's stage records in the run store (its ``_run`` record aside); none when there is no
    entity or run id, or no run store reachable from here (the event then just lacks what they give)."""
    if not entity or not run_id:
        return []
    try:
        from entity_etl.runtime.run_store import RUN, open_run_store

        return [r for r in open_run_store().run_records(entity, str(run_id)) if r.stage != RUN]
    except Exception:
        return []


def _stage_stats_from_run_store(entity: str | None, run_id: Any) -> dict[str, Mapping[str, Any]]:
    """The run's per-stage statistics as the runtime recorded them (the run store is the audit trail)."""
    return {r.stage: r.stats for r in _stage_records(entity, run_id) if r.status == "succeeded" and r.stats}


def failed_stage_record(entity: str | None, run_id: Any, stage: str | None) -> Any:
    """The run store's failed record of ``stage`` (else the run's latest failed stage), or None."""
    failed = [r for r in _stage_records(entity, run_id) if r.status == "failed" and r.error]
    own = [r for r in failed if r.stage == stage]
    return max(own or failed, key=lambda r: r.ended_at or r.started_at, default=None)


def _stats_from_xcom(context: Mapping[str, Any], ti: Any) -> tuple[dict[str, Mapping[str, Any]], Any]:
    """(stage statistics, row counts) among the DAG's tasks' return values, as far as XCom is readable."""
    dag = context.get("dag")
    found: dict[str, Mapping[str, Any]] = {}
    counts = None
    if ti is not None and dag is not None:
        for task_id in field(dag, "task_ids", None) or ():
            value = xcom(ti, task_id, "return_value")
            if not isinstance(value, Mapping):
                continue
            if "rows_out" in value:
                found[task_id] = value
            if isinstance(value.get("row_counts"), Mapping):
                counts = dict(value["row_counts"])
    return found, counts


def run_summary(context: Mapping[str, Any], ti: Any, entity: str | None) -> dict[str, Any]:
    """Statistics of the run's stages: from XCom (any return value that looks like stage statistics)
    when this context can read XCom, else from the run store (a DAG callback in the DAG processor, or
    under ``dag.test()``, may have no XCom access)."""
    from entity_etl.runtime.completion_events import row_counts

    found, counts = _stats_from_xcom(context, ti)
    if not found:
        found = _stage_stats_from_run_store(entity, context.get("run_id"))
    if counts is None and found:
        counts = row_counts(found)
    stages = {
        stage: {k: value.get(k) for k in ("rows_in", "rows_out", "duplicates_removed", "bytes", "duration_s")}
        for stage, value in found.items()
    }
    dag_run = context.get("dag_run")
    start, end = field(dag_run, "start_date"), field(dag_run, "end_date")
    duration = (
        (end - start).total_seconds() if isinstance(start, dt.datetime) and isinstance(end, dt.datetime) else None
    )
    return {"stages": stages, "row_counts": counts, "duration_s": duration}
