"""``orchestration/notify/run_summary.py``: a ``run_succeeded`` event's statistics from XCom, else from the run store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from entity_etl.orchestration.notifier import (
    SnsEventNotifier,
)
from support.notify_events import (
    RUN_ID,
    RUN_URL,
    START,
    DagRun,
    NoXComTaskInstance,
    TaskInstance,
    context,
    published,
    sns_tap,
)
from support.servers import MotoServer

pytestmark = pytest.mark.moto


def test_run_succeeded_event_carries_the_summary(aws: MotoServer, airflow_env: None, de_dag: Any) -> None:
    topic, queue = sns_tap()
    ti = TaskInstance("etl_de", RUN_ID, "release_lease")
    stats = {
        "extract": {"rows_in": 1200, "rows_out": 1200, "duplicates_removed": 0, "bytes": 40960, "duration_s": 2.5},
        "dedupe": {"rows_in": 1200, "rows_out": 1150, "duplicates_removed": 50, "bytes": 0, "duration_s": 0.4},
        "load_target": {"rows_in": 1150, "rows_out": 1150, "duplicates_removed": 0, "bytes": 0, "duration_s": 1.1},
    }
    for stage, values in stats.items():
        ti.xcoms[(stage, "return_value")] = {"entity": "de", "stage": stage, "details": {}, **values}
    row_counts = {"extracted": 1200, "staged": 1200, "duplicates_removed": 50, "loaded": 1150, "target_rows": 9000}
    ti.xcoms[("publish_loaded", "return_value")] = {"event": "entity_loaded", "row_counts": row_counts}
    run = DagRun(RUN_ID, START + dt.timedelta(days=1, minutes=5), START + dt.timedelta(days=1, minutes=17))
    SnsEventNotifier("run_succeeded", entity="de", topic_arn=topic)(context(de_dag, ti, dag_run=run, reason="success"))

    event = published(queue)["body"]
    assert event["kind"] == "run_succeeded"
    assert event["task_id"] is None and event["stage"] is None and event["try_number"] is None
    assert event["error"] is None
    assert event["airflow_url"] == event["airflow_run_url"] == RUN_URL
    assert event["summary"] == {"stages": stats, "row_counts": row_counts, "duration_s": 720.0}


def test_run_succeeded_summary_falls_back_to_the_run_store(
    aws: MotoServer, airflow_env: None, de_dag: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entity_etl.runtime.run_store import RUN, StageRecord, open_run_store

    monkeypatch.setenv("ETL_STATE_STORE", "sqlite")
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    store = open_run_store()
    store.put(StageRecord("de", RUN_ID, RUN, "succeeded"))
    recorded = {
        "extract": {"rows_in": 900, "rows_out": 900, "duplicates_removed": 0, "bytes": 2048, "duration_s": 1.5},
        "load_staging": {"rows_in": 900, "rows_out": 900, "duplicates_removed": 0, "bytes": 2048, "duration_s": 0.5},
        "dedupe": {"rows_in": 900, "rows_out": 870, "duplicates_removed": 30, "bytes": 0, "duration_s": 0.2},
    }
    for stage, values in recorded.items():
        store.put(StageRecord("de", RUN_ID, stage, "succeeded", stats={"stage": stage, "details": {}, **values}))
    store.put(StageRecord("de", RUN_ID, "load_target", "failed", stats={"rows_out": 5}))  # not a finished stage
    store.put(StageRecord("de", "another-run", "extract", "succeeded", stats={"rows_out": 1}))

    topic, queue = sns_tap()
    ti = NoXComTaskInstance("etl_de", RUN_ID, "release_lease")
    SnsEventNotifier("run_succeeded", entity="de", topic_arn=topic)(context(de_dag, ti, reason="success"))

    summary = published(queue)["body"]["summary"]
    assert summary["stages"] == recorded
    assert summary["row_counts"] == {
        "extracted": 900,
        "staged": 900,
        "duplicates_removed": 30,
        "loaded": 0,
        "target_rows": 0,
    }
