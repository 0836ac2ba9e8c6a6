"""The DAG's setup/teardown tasks and the completion event, driven with a real task context shape."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from entity_etl.orchestration.completion_task import EntityLoadedPublishOperator
from entity_etl.orchestration.entity_lease_tasks import EntityLeaseReleaseOperator, EntityLeaseSensor
from entity_etl.runtime.completion_events import entity_loaded_event
from entity_etl.runtime.lease import SqliteLeaseStore
from entity_etl.runtime.run_store import SqliteRunStore, StageRecord


@dataclass
class FakeDag:  # the two attributes the tasks read from context["dag"]
    dag_id: str


@dataclass
class TaskInstance:
    """The slice of a RuntimeTaskInstance these tasks use: try_number and xcom_pull."""

    try_number: int = 1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_pull(self, task_ids: str) -> Any:
        return self.xcoms.get(task_ids)


def context(run_id: str, ti: TaskInstance | None = None) -> dict[str, Any]:
    return {
        "dag": FakeDag("etl_xx"),
        "run_id": run_id,
        "ti": ti or TaskInstance(),
        "data_interval_start": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "data_interval_end": dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    }


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("ETL_STATE_STORE", "sqlite")
    return tmp_path / "state.db"


def test_second_run_waits_then_takes_over(state: Path) -> None:
    first = EntityLeaseSensor(task_id="acquire_lease", entity="xx", wait_s=3600)
    assert first.poke(context("run-1")) is True
    second = EntityLeaseSensor(task_id="acquire_lease", entity="xx", wait_s=3600)
    assert second.poke(context("run-2")) is False  # waits (reschedule) while run-1 holds it
    assert first.poke(context("run-1")) is True  # re-entrant for the holder's own retry
    EntityLeaseReleaseOperator(task_id="release_lease", entity="xx", stages=["extract"]).execute(context("run-1"))
    assert second.poke(context("run-2")) is True
    holder = SqliteLeaseStore(state).holder("xx")
    assert holder is not None and holder.owner == "etl_xx/run-2"


def test_no_wait_fails_naming_the_holder(state: Path) -> None:
    SqliteLeaseStore(state).acquire("xx", "etl_xx/backfill__2026-01-01 on prod-mwaa", ttl_s=600)
    sensor = EntityLeaseSensor(task_id="acquire_lease", entity="xx", wait_s=0)
    with pytest.raises(
        AirflowFailException, match=r"xx: the entity lease is held by etl_xx/backfill__2026-01-01 on prod-mwaa"
    ):
        sensor.poke(context("run-3"))


def test_the_same_run_in_two_environments_is_not_one_holder(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Airflow environments on one lease table schedule the same run ids: ETL_ENVIRONMENT tells them apart."""
    sensor = EntityLeaseSensor(task_id="acquire_lease", entity="xx", wait_s=0)
    monkeypatch.setenv("ETL_ENVIRONMENT", "mwaa-prod")
    assert sensor.poke(context("scheduled__2026-01-01")) is True
    monkeypatch.setenv("ETL_ENVIRONMENT", "mwaa-dr")
    with pytest.raises(
        AirflowFailException, match=r"xx: the entity lease is held by etl_xx/scheduled__2026-01-01@mwaa-prod "
    ):
        sensor.poke(context("scheduled__2026-01-01"))
    monkeypatch.setenv("ETL_ENVIRONMENT", "mwaa-prod")
    assert sensor.poke(context("scheduled__2026-01-01")) is True  # the holder's own retry


def test_teardown_closes_the_run_record_and_only_frees_its_own_lease(state: Path) -> None:
    EntityLeaseSensor(task_id="acquire_lease", entity="xx", wait_s=60).poke(context("run-4"))
    runs = SqliteRunStore(state)
    runs.put(StageRecord("xx", "run-4", "extract", "succeeded"))
    runs.put(StageRecord("xx", "run-4", "load_target", "failed", error="boom"))
    result = EntityLeaseReleaseOperator(
        task_id="release_lease", entity="xx", stages=["extract", "load_target"]
    ).execute(context("run-4"))
    assert result == {"status": "failed", "lease_released": True, "not_succeeded": ["load_target"]}
    run = runs.get("xx", "run-4")
    assert run is not None and run.status == "failed" and run.error == "stages not succeeded: load_target"
    assert SqliteLeaseStore(state).holder("xx") is None
    # A teardown of a run that never got the lease leaves someone else's lease alone.
    SqliteLeaseStore(state).acquire("xx", "etl_xx/run-5", ttl_s=600)
    other = EntityLeaseReleaseOperator(task_id="release_lease", entity="xx", stages=["extract"]).execute(
        context("run-6")
    )
    assert other["lease_released"] is False
    assert SqliteLeaseStore(state).holder("xx") is not None


STATS = {
    "extract": {"rows_out": 1000, "details": {"manifest": "s3://bucket/extracts/xx/run/_manifest.json"}},
    "load_staging": {"rows_out": 1000},
    "dedupe": {"rows_out": 950, "duplicates_removed": 50},
    "load_target": {"rows_out": 950, "details": {"target_rows": 12345}},
}


def test_entity_loaded_event_to_sqs(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="entity-loaded-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="entity-loaded",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
    )["QueueUrl"]
    monkeypatch.setenv("ETL_COMPLETION_QUEUE_URL", queue)
    ti = TaskInstance(xcoms=STATS)
    event = EntityLoadedPublishOperator(task_id="publish_loaded", entity="xx", stages=list(STATS)).execute(
        context("scheduled__2026-01-01T00:00:00+00:00", ti)
    )
    messages = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body == event
    assert body["schema_version"] == 1 and body["event"] == "entity_loaded"
    assert body["entity"] == "xx" and body["run_id"] == "scheduled__2026-01-01T00:00:00+00:00"
    assert body["data_interval"] == {"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-02T00:00:00+00:00"}
    assert body["row_counts"] == {
        "extracted": 1000,
        "staged": 1000,
        "duplicates_removed": 50,
        "loaded": 950,
        "target_rows": 12345,
    }
    assert body["extract_uri"] == "s3://bucket/extracts/xx/run/_manifest.json"
    assert messages[0]["MessageAttributes"]["entity"]["StringValue"] == "xx"
    # The same run published twice carries the same event_id, for consumers to drop the duplicate.
    again = entity_loaded_event(
        entity="xx", run_id=body["run_id"], interval_start="", interval_end="", stats={}, extract_uri=""
    )
    assert again["event_id"] == body["event_id"]
