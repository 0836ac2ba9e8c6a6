"""``orchestration/notify/event.py`` and ``context.py``: the notifier publishes to SNS (moto), read back
field by field through an SQS queue, from contexts of the real ``etl_de`` DAG."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from entity_etl.orchestration.notifier import (
    SnsEventNotifier,
)
from support.notify_events import RUN_ID, RUN_URL, TaskInstance, cloudwatch_url, context, published, sns_tap
from support.servers import MotoServer

pytestmark = pytest.mark.moto


def test_task_failed_event_field_by_field(aws: MotoServer, airflow_env: None, de_dag: Any) -> None:
    topic, queue = sns_tap()
    ti = TaskInstance("etl_de", RUN_ID, "load_target", try_number=3, max_tries=2)
    secret_text = (
        "(1062, \"Duplicate entry '+49 170 1234567' for key 'PRIMARY'\") on "
        "mysql://etl:hunter2@db.internal:3306/target password=hunter2 " + "x" * 2000
    )
    SnsEventNotifier("task_failed", entity="de", topic_arn=topic)(
        context(de_dag, ti, exception=RuntimeError(secret_text))
    )

    message = published(queue)
    event = message["body"]
    assert message["attributes"] == {"kind": "task_failed", "entity": "de", "schema_version": "1", "source": "airflow"}
    assert event["schema_version"] == 1
    assert event["kind"] == "task_failed"
    assert event["source"] == "airflow"
    assert re.fullmatch(r"[0-9a-f]{32}", event["event_id"])
    assert dt.datetime.fromisoformat(event["emitted_at"]).tzinfo is not None
    assert event["entity"] == "de"
    assert event["dag_id"] == "etl_de"
    assert event["run_id"] == RUN_ID
    assert event["task_id"] == "load_target"
    assert event["stage"] == "load_target"
    assert event["logical_date"] == "2026-11-02T00:00:00+00:00"
    assert event["data_interval"] == {"start": "2026-11-02T00:00:00+00:00", "end": "2026-11-03T00:00:00+00:00"}
    assert (event["try_number"], event["max_tries"]) == (3, 2)
    assert event["error"]["type"] == "RuntimeError"
    error = event["error"]["message"]
    assert len(error) == 1000 and error.endswith("…")
    assert "hunter2" not in error and "1234567" not in error
    assert "mysql://***:***@db.internal:3306/target" in error and "Duplicate entry" in error
    assert event["reason"] is None
    assert event["airflow_url"] == ti.log_url
    assert event["airflow_run_url"] == RUN_URL
    # The local backend ran no Batch job: no Batch section and no CloudWatch link.
    assert event["batch"] is None and event["cloudwatch_log_url"] is None
    assert event["summary"] is None and event["deadline"] is None


def test_dag_run_failed_event(aws: MotoServer, airflow_env: None, de_dag: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    topic, queue = sns_tap()
    monkeypatch.setenv("ETL_NOTIFY_TOPIC_ARN", topic)
    monkeypatch.setenv("ETL_NOTIFY_SOURCE", "airflow/mwaa-prod")
    # The DAG processor's context: the task that caused the failure, and the reason.
    ti = TaskInstance("etl_de", RUN_ID, "dedupe", try_number=3, max_tries=2)
    SnsEventNotifier("dag_run_failed")(context(de_dag, ti, reason="task_failure"))

    event = published(queue)["body"]
    assert event["kind"] == "dag_run_failed"
    assert event["source"] == "airflow/mwaa-prod"
    assert event["entity"] == "de"  # from the DAG's entity:de tag
    assert (event["dag_id"], event["run_id"]) == ("etl_de", RUN_ID)
    assert (event["task_id"], event["stage"]) == ("dedupe", "dedupe")
    assert event["reason"] == "task_failure"
    assert event["error"] is None
    assert (event["try_number"], event["max_tries"]) == (3, 2)
    assert event["airflow_url"] == ti.log_url and event["airflow_run_url"] == RUN_URL
    assert event["batch"] is None and event["summary"] is None and event["deadline"] is None


def test_dag_run_failed_event_carries_the_failed_stages_error_from_the_run_store(
    aws: MotoServer, airflow_env: None, de_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entity_etl.runtime.run_store import StageRecord, open_run_store

    topic, queue = sns_tap()
    monkeypatch.setenv("ETL_NOTIFY_TOPIC_ARN", topic)
    log = cloudwatch_url("etl-stage/default/job-1")
    store = open_run_store()
    store.put(StageRecord("de", RUN_ID, "dedupe", "running", attempt=3, started_at="2026-11-02T00:01:00+00:00"))
    store.put(
        StageRecord(
            "de",
            RUN_ID,
            "dedupe",
            "failed",
            attempt=3,
            started_at="2026-11-02T00:01:00+00:00",
            ended_at="2026-11-02T00:02:00+00:00",
            error="de: dedupe: tgt: Lock wait timeout exceeded; password=hunter2",
            log_url=log,
        )
    )
    ti = TaskInstance("etl_de", RUN_ID, "dedupe", try_number=3, max_tries=2)
    SnsEventNotifier("dag_run_failed")(context(de_dag, ti, reason="task_failure"))

    event = published(queue)["body"]
    assert event["stage"] == "dedupe"
    assert event["error"] == {
        "type": "StageError",
        "message": "de: dedupe: tgt: Lock wait timeout exceeded; password=***",
    }
    assert event["cloudwatch_log_url"] == log
