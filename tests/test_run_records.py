"""The run-record policy (runtime/run_records.py) on the SQLite run store: the attempt itself raises on a
stale update, an observer keeps the later state and says so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from entity_etl.runtime import run_records
from entity_etl.runtime.run_store import RUN, SqliteRunStore, StaleUpdateError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _finish(store: SqliteRunStore, name: str, attempt: int, stats: dict[str, int] | None, error: str = "") -> None:
    run_records.finish_stage(
        store, "de", "r1", name, attempt=attempt, started=T0, stats=stats, error=error, batch_job_id="j1"
    )


def test_a_run_opens_closes_and_a_late_open_keeps_the_closed_record(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "state.db")
    assert run_records.open_run(store, "de", "r1", attempt=1)
    run_records.start_stage(store, "de", "r1", "extract", attempt=1, started=T0, batch_job_id="")
    _finish(store, "extract", 1, {"rows_out": 5})
    status, failed, written = run_records.close_run(store, "de", "r1", ["extract", "dedupe"])
    assert (status, failed, written) == ("failed", ["dedupe"], True)
    closed = store.get("de", "r1", RUN)
    assert closed is not None and closed.status == "failed" and closed.error == "stages not succeeded: dedupe"
    assert not run_records.open_run(store, "de", "r1", attempt=1)  # a retried setup task
    assert store.get("de", "r1", RUN) == closed


def test_a_superseded_attempt_raises_and_a_late_batch_diagnosis_keeps_the_later_state(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "state.db")
    run_records.start_stage(store, "de", "r1", "dedupe", attempt=2, started=T0, batch_job_id="")
    with pytest.raises(StaleUpdateError):
        run_records.start_stage(store, "de", "r1", "dedupe", attempt=1, started=T0, batch_job_id="")
    with pytest.raises(StaleUpdateError):
        _finish(store, "dedupe", 1, None, "de: dedupe: boom")
    _finish(store, "dedupe", 2, {"rows_out": 3})
    later = store.get("de", "r1", "dedupe")
    kept = run_records.record_batch_failure(
        store, None, entity="de", run_id="r1", stage="dedupe", attempt=1, why="job died", job_id="j0", log_url=""
    )
    assert not kept and store.get("de", "r1", "dedupe") == later


def test_a_batch_failure_keeps_what_the_same_try_recorded(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "state.db")
    run_records.start_stage(store, "de", "r1", "extract", attempt=1, started=T0, batch_job_id="j1")
    record = store.get("de", "r1", "extract")
    assert run_records.failed_stage_error(record, 1) is None  # running: nothing said yet
    assert run_records.record_batch_failure(
        store, record, entity="de", run_id="r1", stage="extract", attempt=1, why="OOM", job_id="j1", log_url="u"
    )
    failed = store.get("de", "r1", "extract")
    assert failed is not None and record is not None
    assert (failed.status, failed.error, failed.started_at, failed.log_url) == ("failed", "OOM", record.started_at, "u")
    assert run_records.failed_stage_error(failed, 1) == "OOM"
    assert run_records.failed_stage_error(failed, 2) is None
