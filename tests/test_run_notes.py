"""The run summary (runtime/run_summary.py) stored by ``close_run`` and the DAG-run note built from it
(orchestration/run_note.py), on a real SQLite file and on a moto DynamoDB run store (Query only)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.orchestration import run_note
from entity_etl.runtime import run_records
from entity_etl.runtime.run_store import RUN, DynamoRunStore, RunStore, SqliteRunStore
from entity_etl.runtime.run_summary import format_note, stored_summary

T0 = dt.datetime(2026, 11, 2, 0, 5, tzinfo=dt.UTC)
INTERVAL = ("2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00")
STAGES = ["extract", "load_staging", "dedupe", "load_target"]


def _forbid_scan(**_: Any) -> None:
    raise AssertionError("the run note and the summary must Query the run store, never Scan it")


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunStore]:
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        monkeypatch.setenv("ETL_STATE_STORE", "sqlite")
        monkeypatch.setenv("ETL_STATE_DB", str(path))
        yield SqliteRunStore(path)
        return
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb")
    client.create_table(**DynamoRunStore.table_definition("runs"))
    client.meta.events.register("before-call.dynamodb.Scan", _forbid_scan)
    monkeypatch.setenv("ETL_STATE_STORE", "dynamodb")
    monkeypatch.setenv("ETL_RUNS_TABLE", "runs")
    yield DynamoRunStore("runs", client)


def _stage(store: RunStore, run_id: str, name: str, stats: dict[str, Any] | None, error: str = "") -> None:
    run_records.start_stage(store, "de", run_id, name, attempt=1, started=T0, batch_job_id="")
    run_records.finish_stage(
        store, "de", run_id, name, attempt=1, started=T0, stats=stats, error=error, batch_job_id=""
    )


def _full_run(store: RunStore, run_id: str) -> None:
    run_records.open_run(store, "de", run_id, attempt=1)
    _stage(store, run_id, "extract", {"rows_out": 1200, "details": {"resumed_chunks": 2, "parts": 3}})
    _stage(store, run_id, "load_staging", {"rows_out": 1200, "details": {"resumed_parts": 1}})
    _stage(store, run_id, "dedupe", {"rows_out": 1150, "duplicates_removed": 50})
    _stage(
        store,
        run_id,
        "load_target",
        {"rows_out": 1150, "details": {"target_rows": 9150, "kept_newer": 7, "resumed_chunks": 0}},
    )


def test_close_run_stores_the_summary_of_the_stage_records(store: RunStore) -> None:
    _full_run(store, "manual__1")
    status, failed, written = run_records.close_run(store, "de", "manual__1", STAGES, interval=INTERVAL)
    assert (status, failed, written) == ("succeeded", [], True)
    summary = stored_summary(store.get("de", "manual__1", RUN))
    assert summary is not None
    assert {k: v for k, v in summary.items() if k not in ("duration_s", "stages")} == {
        "status": "succeeded",
        "interval_start": INTERVAL[0],
        "interval_end": INTERVAL[1],
        "rows_extracted": 1200,
        "duplicates_removed": 50,
        "rows_loaded": 1150,
        "target_rows": 9150,
        "kept_newer": 7,
        "resumed_chunks": 3,
        "warnings": [],
    }
    assert summary["stages"] == dict.fromkeys(sorted(STAGES), "succeeded")
    opened = store.get("de", "manual__1", RUN)
    assert opened is not None
    wall = (dt.datetime.fromisoformat(opened.ended_at) - dt.datetime.fromisoformat(opened.started_at)).total_seconds()
    assert summary["duration_s"] == pytest.approx(wall, abs=0.002) and summary["duration_s"] >= 0


def test_a_failed_run_has_no_figures_from_the_stages_that_did_not_succeed(store: RunStore) -> None:
    run_records.open_run(store, "de", "r2", attempt=1)
    _stage(store, "r2", "extract", {"rows_out": 0, "details": {"warning": "de: extract found no rows in [a, b)"}})
    _stage(store, "r2", "load_staging", None, "de: load_staging: boom")
    status, failed, _ = run_records.close_run(store, "de", "r2", STAGES, interval=INTERVAL)
    assert status == "failed" and failed == ["load_staging", "dedupe", "load_target"]
    summary = stored_summary(store.get("de", "r2", RUN))
    assert summary is not None
    assert summary["rows_extracted"] == 0
    assert summary["rows_loaded"] is None and summary["target_rows"] is None and summary["duplicates_removed"] is None
    note = format_note("de", summary)
    assert note.startswith("**de: run failed**")
    assert "- rows loaded: –" in note and "- not succeeded: load_staging" in note
    assert "⚠ de: extract found no rows in [a, b)" in note


def test_the_note_of_an_entity_run_comes_from_the_store_the_stages_use(store: RunStore) -> None:
    _full_run(store, "scheduled__2026-11-01")
    run_records.close_run(store, "de", "scheduled__2026-11-01", STAGES, interval=INTERVAL)
    note = run_note.note_for("etl_de", "scheduled__2026-11-01")
    assert note is not None
    for line in (
        "**de: run succeeded**",
        f"- interval: {INTERVAL[0]} → {INTERVAL[1]}",
        "- rows extracted: 1,200",
        "- duplicates removed: 50",
        "- rows loaded: 1,150",
        "- target rows: 9,150",
        "- kept newer: 7",
        "- resumed chunks: 3",
    ):
        assert line in note.splitlines(), (line, note)
    assert "- duration: " in note and len(note) <= run_note.NOTE_LIMIT
    assert run_note.note_for("etl_de", "never_ran") is None  # no summary: no note
    assert run_note.note_for("survey_nps_daily", "scheduled__2026-11-01") is None  # not an entity DAG


class _Run:
    """What the listener touches of Airflow's DagRun: its ids and its note."""

    def __init__(self, dag_id: str, run_id: str, note: str | None = None) -> None:
        self.dag_id, self.run_id, self.note = dag_id, run_id, note


def test_the_listener_sets_the_note_and_keeps_a_hand_written_one(store: RunStore) -> None:
    _full_run(store, "r3")
    run_records.close_run(store, "de", "r3", STAGES, interval=INTERVAL)
    ours = run_note.note_for("etl_de", "r3")
    assert ours is not None
    fresh = _Run("etl_de", "r3")
    run_note.run_note_listener.on_dag_run_success(dag_run=fresh, msg="success")
    assert fresh.note == ours
    # A cleared and rerun run: our earlier note is replaced, a hand-written one stays first.
    rerun = _Run("etl_de", "r3", note="**de: run failed**\n- rows loaded: –")
    run_note.run_note_listener.on_dag_run_failed(dag_run=rerun, msg="task_failure")
    assert rerun.note == ours
    by_hand = _Run("etl_de", "r3", note="checked with the DE team")
    run_note.run_note_listener.on_dag_run_success(dag_run=by_hand, msg="success")
    assert by_hand.note == f"checked with the DE team{run_note.SEPARATOR}{ours}"
    run_note.run_note_listener.on_dag_run_success(dag_run=by_hand, msg="success")  # twice: still one summary
    assert by_hand.note == f"checked with the DE team{run_note.SEPARATOR}{ours}"


def test_an_unreadable_store_never_fails_the_state_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_STATE_STORE", "nonsense")
    run = _Run("etl_de", "r4", note="kept")
    run_note.run_note_listener.on_dag_run_failed(dag_run=run, msg="task_failure")
    assert run.note == "kept"
