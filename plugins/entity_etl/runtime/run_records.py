"""The one owner of run and stage records: what is written to the run store, when, and what a stale
update means.

Writers (the stage runner in the container, the lease tasks and the Batch failure diagnosis in Airflow)
go through these functions; readers (``etlctl runs``, the notifier) read the store's records directly.

**Stale updates.** The store refuses an update when it already holds a later state of the record (a later
attempt, or a finished state after a running one): :class:`~entity_etl.runtime.run_store.StaleUpdateError`.
One policy, by who writes:

* the **attempt itself** (:func:`start_stage`, :func:`finish_stage`) raises: a newer attempt of the stage
  exists, so this one has been superseded and must not go on or claim a result;
* an **observer** (:func:`open_run`, :func:`close_run`, :func:`record_batch_failure`) keeps the later state
  and returns ``False``: a retried setup task, a late teardown or a late diagnosis never overwrites what the
  stages recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from entity_etl.runtime import run_summary
from entity_etl.runtime.run_store import RUN, RunStore, StageRecord, StaleUpdateError, now_iso


def _put_unless_stale(store: RunStore, record: StageRecord) -> bool:
    try:
        store.put(record)
    except StaleUpdateError:
        return False
    return True


# -- the run ------------------------------------------------------------------------------------------
def open_run(store: RunStore, entity: str, run_id: str, *, attempt: int) -> bool:
    """The run's record goes ``running`` (the lease setup task); ``False`` if a later state is kept."""
    return _put_unless_stale(store, StageRecord(entity, run_id, RUN, "running", attempt=attempt))


def close_run(
    store: RunStore,
    entity: str,
    run_id: str,
    stages: Sequence[str],
    *,
    interval: tuple[str, str] | None = None,
) -> tuple[str, list[str], bool]:
    """Close the run's record from its stages' records (the teardown task): ``(status, stages not
    succeeded, whether the record was written)``. The record's ``stats`` keep the run's summary
    (``run_summary.build_summary``) under ``"summary"``: the run note and the Entities page read it."""
    listed = store.run_records(entity, run_id)
    records = {r.stage: r for r in listed}
    failed = [s for s in stages if records.get(s) is None or records[s].status != "succeeded"]
    status = "failed" if failed else "succeeded"
    opened = records.get(RUN)
    started_at, ended_at = (opened.started_at if opened else now_iso()), now_iso()
    summary = run_summary.build_summary(
        listed, interval=interval, status=status, started_at=started_at, ended_at=ended_at
    )
    written = _put_unless_stale(
        store,
        StageRecord(
            entity,
            run_id,
            RUN,
            status,
            attempt=(opened.attempt if opened else 1),
            started_at=started_at,
            ended_at=ended_at,
            stats={run_summary.SUMMARY_KEY: summary},
            error=f"stages not succeeded: {', '.join(failed)}" if failed else "",
        ),
    )
    return status, failed, written


# -- a stage ------------------------------------------------------------------------------------------
def start_stage(
    store: RunStore, entity: str, run_id: str, name: str, *, attempt: int, started: dt.datetime, batch_job_id: str
) -> None:
    """The stage's record goes ``running``; raises ``StaleUpdateError`` if a newer attempt exists."""
    store.put(
        StageRecord(
            entity, run_id, name, "running", attempt=attempt, started_at=started.isoformat(), batch_job_id=batch_job_id
        )
    )


def finish_stage(
    store: RunStore,
    entity: str,
    run_id: str,
    name: str,
    *,
    attempt: int,
    started: dt.datetime,
    stats: dict[str, Any] | None,
    error: str,
    batch_job_id: str,
) -> None:
    """The stage's record goes ``succeeded`` (``stats``) or ``failed`` (``error``); raises
    ``StaleUpdateError`` if a newer attempt exists."""
    store.put(
        StageRecord(
            entity,
            run_id,
            name,
            "succeeded" if stats is not None else "failed",
            attempt=attempt,
            started_at=started.isoformat(),
            ended_at=now_iso(),
            stats=stats or {},
            error=error[:2000],
            batch_job_id=batch_job_id,
        )
    )


def record_batch_failure(
    store: RunStore,
    record: StageRecord | None,
    *,
    entity: str,
    run_id: str,
    stage: str,
    attempt: int,
    why: str,
    job_id: str,
    log_url: str,
) -> bool:
    """Record ``why`` (what AWS Batch says) as this try's failure of the stage, keeping what the try
    recorded before (``record``): a container that died recorded nothing itself."""
    same_try = record is not None and record.attempt == attempt
    return _put_unless_stale(
        store,
        StageRecord(
            entity,
            run_id,
            stage,
            "failed",
            attempt=attempt,
            started_at=record.started_at if record is not None and same_try else now_iso(),
            ended_at=now_iso(),
            stats=record.stats if record is not None and same_try else {},
            error=why,
            batch_job_id=job_id,
            log_url=log_url,
        ),
    )


def failed_stage_error(record: StageRecord | None, attempt: int) -> str | None:
    """The one-line error this try of the stage recorded itself, if it failed and said why."""
    if record is not None and record.status == "failed" and record.attempt == attempt and record.error:
        return record.error
    return None
