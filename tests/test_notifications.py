"""Run notifications end to end against real parts.

* The Airflow notifier publishes to a real SNS topic on moto; an SQS queue subscribed with raw message
  delivery receives exactly what subscribers get. Contexts are built from the real ``etl_de`` DAG
  and its operators, with a small task-instance class; the Batch case runs the real stage operator
  against a moto server whose Batch jobs fail. ``run_too_long`` goes through DAG serialization and
  Airflow's own ``CallbackTrigger``, as in the triggerer.
* The Teams Lambda reads its webhook URL from Secrets Manager (moto), posts to a local HTTP server
  that records every request and answers as scripted, and dead-letters to SQS (moto).
* The EventBridge rules are put on moto's EventBridge with an SQS target (moto does not implement
  ``TestEventPattern``, and delivers to SQS but not SNS), and the documented sample events are sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import quote, quote_plus

import boto3
import pytest
import structlog

from entity_etl.config.loader import find_entity
from entity_etl.orchestration.factory import build_entity_dag
from entity_etl.orchestration.notifier import (
    SnsEventNotifier,
    batch_failure_details,
    build_event,
    redact,
    run_too_long_alert,
)
from support.servers import MotoServer, free_port, start_moto
from support.teams_lambda import load_teams_handler

pytestmark = pytest.mark.moto

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_DIR = ROOT / "lambdas" / "notifications"
RULES_FILE = ROOT / "deploy" / "eventbridge" / "batch-failures.json"
REGION = "eu-west-1"
BASE_URL = "https://airflow.example.test"
RUN_ID = "scheduled__2026-11-02T00:00:00+00:00"
START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
END = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
RUN_URL = f"{BASE_URL}/dags/etl_de/runs/{quote(RUN_ID, safe='')}"
SIG = "sig-9f8e7d6c5b4a"  # the signature in the webhook URL: must never reach a log


# -- Airflow side: a small real task instance and contexts from the real etl_de DAG -----------------
@dataclass
class TaskInstance:
    """What callbacks read from ``ti``: ids, try numbers, the log URL and XCom."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int = 1
    max_tries: int = 0
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def log_url(self) -> str:  # as RuntimeTaskInstance.log_url builds it
        return (
            f"{BASE_URL}/dags/{self.dag_id}/runs/{quote(self.run_id)}/tasks/{self.task_id}?try_number={self.try_number}"
        )

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get((task_ids or self.task_id, key))


@pytest.fixture(scope="module")
def de_dag() -> Any:
    return build_entity_dag(find_entity("de"))


def context(dag: Any, ti: TaskInstance, **extra: Any) -> dict[str, Any]:
    """The keys of the context Airflow hands a task callback."""
    return {
        "dag": dag,
        "task": dag.get_task(ti.task_id),
        "ti": ti,
        "task_instance": ti,
        "run_id": ti.run_id,
        "logical_date": START,
        "data_interval_start": START,
        "data_interval_end": END,
        **extra,
    }


@pytest.fixture
def airflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL + "/")
    monkeypatch.delenv("ETL_NOTIFY_SOURCE", raising=False)
    monkeypatch.delenv("ETL_NOTIFY_TOPIC_ARN", raising=False)


def sns_tap() -> tuple[str, str]:
    """An SNS topic and an SQS queue subscribed to it with raw delivery: (topic ARN, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="etl-notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="etl-notifications-tap")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def drain(queue_url: str, expect: int | None = None) -> list[dict[str, Any]]:
    """Every message in the queue: ``{"body": parsed JSON, "attributes": {name: value}}``."""
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        ).get("Messages", [])
        for message in batch:
            attributes = {k: v.get("StringValue") for k, v in message.get("MessageAttributes", {}).items()}
            found.append({"body": json.loads(message["Body"]), "attributes": attributes})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not batch and (expect is None or len(found) >= expect):
            break
        if not batch:
            time.sleep(0.1)
    return found


def published(queue_url: str) -> dict[str, Any]:
    (message,) = drain(queue_url, expect=1)
    return message


# -- the notifier, per event kind -----------------------------------------------------------------
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


@dataclass
class DagRun:
    run_id: str
    start_date: dt.datetime
    end_date: dt.datetime
    logical_date: dt.datetime = START


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


class NoXComTaskInstance(TaskInstance):
    """A DAG callback's ``ti`` where XCom cannot be read (no supervisor to ask)."""

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        raise RuntimeError("no SUPERVISOR_COMMS")


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


def test_run_too_long_alert_serializes_and_runs_in_the_triggerer(aws: MotoServer, airflow_env: None) -> None:
    """The DeadlineAlert survives DAG serialization; Airflow's CallbackTrigger then runs the notifier."""
    from airflow.models.callback import TriggererCallback
    from airflow.sdk import DAG
    from airflow.serialization.decoders import decode_deadline_alert
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.triggers.callback import CallbackTrigger

    topic, queue = sns_tap()
    alert = run_too_long_alert("de", dt.timedelta(hours=2), topic_arn=topic)
    dag = DAG("etl_de", schedule=None, start_date=START, deadline=alert, tags=["entity:de"])
    (encoded,) = DagSerialization.to_dict(dag)["dag"]["deadline"]
    decoded = decode_deadline_alert(encoded)
    assert decoded.interval == dt.timedelta(hours=2)
    assert type(decoded.reference).__name__ == "DagRunQueuedAtDeadline"
    callback = TriggererCallback(decoded.callback)  # what the scheduler queues when the deadline is missed
    assert callback.data["path"] == "entity_etl.orchestration.notifier.SnsEventNotifier"

    # The context Deadline.handle_miss builds: the run (the API's DAGRunResponse, JSON mode) and the deadline.
    simple_context = {
        "dag_run": {
            "dag_id": "etl_de",
            "dag_run_id": RUN_ID,
            "logical_date": "2026-11-02T00:00:00Z",
            "queued_at": "2026-11-03T00:00:05Z",
            "start_date": "2026-11-03T00:00:07Z",
            "end_date": None,
            "data_interval_start": "2026-11-02T00:00:00Z",
            "data_interval_end": "2026-11-03T00:00:00Z",
            "state": "running",
            "run_type": "scheduled",
        },
        "deadline": {"id": "0193a0f4-0000-7000-8000-000000000001", "deadline_time": END + dt.timedelta(hours=2)},
    }
    trigger = CallbackTrigger(
        callback_path=callback.data["path"], callback_kwargs={**callback.data["kwargs"], "context": simple_context}
    )

    async def run() -> list[Any]:
        return [event.payload async for event in trigger.run()]

    states = [str(payload["state"]) for payload in asyncio.run(run())]
    assert states == ["running", "success"]

    event = published(queue)["body"]
    assert event["kind"] == "run_too_long"
    assert (event["entity"], event["dag_id"], event["run_id"]) == ("de", "etl_de", RUN_ID)
    assert event["logical_date"] == "2026-11-02T00:00:00Z"
    assert event["data_interval"] == {"start": "2026-11-02T00:00:00Z", "end": "2026-11-03T00:00:00Z"}
    assert event["deadline"] == {
        "deadline_time": "2026-11-03T02:00:00+00:00",
        "queued_at": "2026-11-03T00:00:05Z",
        "start_date": "2026-11-03T00:00:07Z",
        "state": "running",
        "max_duration_s": 7200.0,
    }
    assert event["airflow_url"] == RUN_URL and event["task_id"] is None and event["error"] is None


def test_without_a_topic_the_event_is_logged_and_a_failing_publish_never_fails_the_callback(
    aws: MotoServer, airflow_env: None, de_dag: Any
) -> None:
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=1, max_tries=0)
    with structlog.testing.capture_logs() as logs:
        SnsEventNotifier("task_failed")(context(de_dag, ti, exception=ValueError("bad row")))
    (line,) = [entry for entry in logs if "no SNS topic" in entry["event"]]
    assert line["log_level"] == "warning"
    logged = json.loads(line["event"][line["event"].index("{") :])
    assert (logged["kind"], logged["entity"], logged["task_id"]) == ("task_failed", "de", "extract")
    assert logged["error"] == {"type": "ValueError", "message": "bad row"}

    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    with structlog.testing.capture_logs() as logs:
        SnsEventNotifier("task_failed", topic_arn=missing)(context(de_dag, ti, exception=ValueError("bad row")))
    (line,) = [entry for entry in logs if entry["log_level"] == "error"]
    assert "could not publish the task_failed notification" in line["event"] and "NotFound" in line["event"]


def test_unknown_kind_is_refused_when_the_dag_is_built() -> None:
    with pytest.raises(ValueError, match="unknown notification kind 'task_exploded'"):
        SnsEventNotifier("task_exploded")


def test_entity_notify_config_wires_the_callbacks() -> None:
    """de.yaml asks for success summaries, jp.yaml has the defaults; a copy of de adds a deadline."""
    de_config = find_entity("de")
    de = build_entity_dag(
        de_config.model_copy(update={"notify": de_config.notify.model_copy(update={"max_run_minutes": 120})})
    )
    assert not build_entity_dag(de_config).deadline
    for task in de.tasks:
        (on_failure,) = task.on_failure_callback
        assert isinstance(on_failure, SnsEventNotifier)
        assert (on_failure.kind, on_failure.entity, on_failure.topic_arn) == ("task_failed", "de", None)
    assert (de.on_failure_callback.kind, de.on_failure_callback.entity) == ("dag_run_failed", "de")
    assert (de.on_success_callback.kind, de.on_success_callback.entity) == ("run_succeeded", "de")
    (alert,) = de.deadline
    assert alert.interval == dt.timedelta(minutes=120)
    assert alert.callback.kwargs == {"kind": "run_too_long", "max_duration_s": 7200.0, "entity": "de"}

    jp = build_entity_dag(find_entity("jp"))
    assert jp.on_failure_callback.kind == "dag_run_failed"
    assert jp.on_success_callback is None
    assert not jp.deadline

    topic = f"arn:aws:sns:{REGION}:123456789012:etl-jp"
    quiet = find_entity("jp").model_copy(
        update={"notify": find_entity("jp").notify.model_copy(update={"on_failure": False, "topic_arn": topic})}
    )
    silent = build_entity_dag(quiet)
    assert silent.on_failure_callback is None
    assert all(not task.on_failure_callback for task in silent.tasks)

    loud = find_entity("jp").model_copy(
        update={"notify": find_entity("jp").notify.model_copy(update={"on_success": True, "topic_arn": topic})}
    )
    assert build_entity_dag(loud).on_success_callback.topic_arn == topic


def test_redact_keeps_the_message_and_drops_secrets_and_numbers() -> None:
    text = redact("login to mysql://etl:pa55@h:3306/db failed; token=abc123; call +44 20 7946 0958 or 4915112345678")
    assert text == "login to mysql://***:***@h:3306/db failed; token=***; call [number] or [number]"
    assert redact("run scheduled__2026-11-02T00:00:00+00:00 stage extract") == (
        "run scheduled__2026-11-02T00:00:00+00:00 stage extract"
    )


# -- a stage that fails on AWS Batch --------------------------------------------------------------
@pytest.fixture(scope="module")
def failing_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server whose Batch jobs fail at once (MOTO_SIMPLE_BATCH_FAIL_AFTER=0)."""
    server = start_moto(tmp_path_factory.mktemp("moto-failing"), extra_env={"MOTO_SIMPLE_BATCH_FAIL_AFTER": "0"})
    yield server
    server.stop()


@pytest.fixture
def failing_aws(failing_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Like the ``aws`` fixture, on the failing server; the provider's Batch polls without sleeping."""
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

    failing_moto.reset()
    failing_moto.configure_batch_without_docker()
    for name, value in {
        "AWS_ENDPOINT_URL": failing_moto.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
        "ETL_COMPUTE_BACKEND": "batch",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MIN", 0)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MAX", 0)
    monkeypatch.setattr(BatchClientHook, "exponential_delay", staticmethod(lambda tries: 0))
    return failing_moto


def create_batch_queue() -> None:
    """A Fargate compute environment, the ``etl-fargate`` queue and the ``etl-stage`` definition."""
    iam, ec2, batch = boto3.client("iam"), boto3.client("ec2"), boto3.client("batch")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="etl-batch-service", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="etl-batch", Description="etl batch", VpcId=vpc)["GroupId"]
    env = batch.create_compute_environment(
        computeEnvironmentName="etl-fargate-ce",
        type="MANAGED",
        state="ENABLED",
        computeResources={"type": "FARGATE", "maxvCpus": 16, "subnets": [subnet], "securityGroupIds": [sg]},
        serviceRole=role,
    )
    batch.create_job_queue(
        jobQueueName="etl-fargate",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    batch.register_job_definition(
        jobDefinitionName="etl-stage",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/entity-etl:latest",
            "command": ["etlctl", "--help"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
            "executionRoleArn": role,
        },
    )


def cloudwatch_url(stream: str, group: str = "/aws/batch/job") -> str:
    return (
        f"https://console.aws.amazon.com/cloudwatch/home?region={REGION}#logsV2:log-groups/log-group/"
        f"{quote_plus(group)}/log-events/{quote_plus(stream)}"
    )


def test_batch_failure_details_reads_the_failed_job(failing_aws: MotoServer) -> None:
    create_batch_queue()
    batch = boto3.client("batch")
    job_id = batch.submit_job(jobName="etl-de-extract-x", jobQueue="etl-fargate", jobDefinition="etl-stage")["jobId"]
    batch.terminate_job(jobId=job_id, reason="Essential container in task exited")

    details = batch_failure_details(job_id)
    stream = f"etl-stage/default/{job_id}"
    assert details == {
        "jobId": job_id,
        "jobName": "etl-de-extract-x",
        "jobQueue": f"arn:aws:batch:{REGION}:123456789012:job-queue/etl-fargate",
        "status": "FAILED",
        "statusReason": "Essential container in task exited",
        "exitCode": None,  # moto's Batch without Docker runs no container
        "containerReason": None,
        "logGroup": "/aws/batch/job",
        "logStreamName": stream,
        "logUrl": cloudwatch_url(stream),
        "jobUrl": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{job_id}",
    }
    with pytest.raises(LookupError, match="no job 00000000-0000-0000-0000-000000000000"):
        batch_failure_details("00000000-0000-0000-0000-000000000000")


def stubbed_batch() -> tuple[Any, Any]:
    """A Batch client with botocore's Stubber: moto's Batch without Docker runs no container, so it
    never reports an exit code or a container reason; the stub answers in the documented shape."""
    from botocore.stub import Stubber

    batch = boto3.client("batch", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return batch, Stubber(batch)


def described(job_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "jobs": [
            {
                "jobId": job_id,
                "jobName": "etl-de-extract-x",
                "jobArn": f"arn:aws:batch:{REGION}:123456789012:job/{job_id}",
                "jobQueue": f"arn:aws:batch:{REGION}:123456789012:job-queue/etl-fargate",
                "status": "FAILED",
                "startedAt": 1,
                "jobDefinition": "etl-stage",
                **fields,
            }
        ]
    }


def test_batch_failure_details_carry_the_exit_code_and_the_container_reason() -> None:
    batch, stub = stubbed_batch()
    stream = "etl-stage/default/abc"
    container = {
        "exitCode": 137,
        "reason": "OutOfMemoryError: Container killed due to memory usage",
        "logStreamName": stream,
    }
    stub.add_response(
        "describe_jobs",
        described("job-1", statusReason="Essential container in task exited", container=container),
        {"jobs": ["job-1"]},
    )
    with stub:
        details = batch_failure_details("job-1", client=batch)
    stub.assert_no_pending_responses()
    assert (details["exitCode"], details["containerReason"]) == (137, container["reason"])
    assert details["statusReason"] == "Essential container in task exited"
    assert details["logUrl"] == cloudwatch_url(stream) and "failedChildJobId" not in details


def test_a_failed_array_job_is_explained_by_its_first_failed_child() -> None:
    batch, stub = stubbed_batch()
    stream = "etl-stage/default/child3"
    stub.add_response(
        "describe_jobs",
        described(
            "parent", statusReason="Array child failed", arrayProperties={"size": 4, "statusSummary": {"FAILED": 1}}
        ),
        {"jobs": ["parent"]},
    )
    stub.add_response(
        "list_jobs",
        {"jobSummaryList": [{"jobId": "parent:3", "jobName": "etl-de-extract-x", "status": "FAILED"}]},
        {"arrayJobId": "parent", "jobStatus": "FAILED"},
    )
    child = {"exitCode": 1, "logStreamName": stream}
    stub.add_response(
        "describe_jobs",
        described("parent:3", statusReason="Essential container in task exited", container=child),
        {"jobs": ["parent:3"]},
    )
    with stub:
        details = batch_failure_details("parent", client=batch)
    stub.assert_no_pending_responses()
    assert details["jobId"] == "parent" and details["failedChildJobId"] == "parent:3"
    assert (details["exitCode"], details["statusReason"]) == (1, "Essential container in task exited")
    assert details["logStreamName"] == stream and details["logUrl"] == cloudwatch_url(stream)


def test_failed_batch_stage_to_teams_card(
    failing_aws: MotoServer,
    airflow_env: None,
    de_dag: Any,
    lam: ModuleType,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real stage operator fails on Batch; its failure callback publishes the job's details; the
    Lambda turns the published message into a card with links to Airflow and the job's log."""
    create_batch_queue()
    topic, queue = sns_tap()
    lam.reset_caches()
    teams_setup(webhook, monkeypatch)
    op = de_dag.get_task("extract")
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=3, max_tries=2)
    ctx = context(de_dag, ti)
    with pytest.raises(Exception, match="failed") as failure:
        op.execute(ctx)
    assert op.job_id and ti.xcoms[("extract", "batch_job_details")]["job_id"] == op.job_id

    SnsEventNotifier("task_failed", entity="de", topic_arn=topic)({**ctx, "exception": failure.value})

    message = published(queue)["body"]
    stream = f"etl-stage/default/{op.job_id}"
    assert message["kind"] == "task_failed" and (message["stage"], message["try_number"]) == ("extract", 3)
    assert message["error"]["type"] == "AirflowException"
    assert f"AWS Batch job ({op.job_id}) failed" in message["error"]["message"]
    assert message["batch"]["jobId"] == op.job_id
    assert message["batch"]["jobName"].startswith("etl-de-extract-")
    assert message["batch"]["status"] == "FAILED"
    assert message["batch"]["logStreamName"] == stream
    assert message["cloudwatch_log_url"] == message["batch"]["logUrl"] == cloudwatch_url(stream)

    result = lam.handler(sns_event(json.dumps(message)), LambdaContext())
    assert result == {"delivered": 1, "dead_lettered": 0}
    (request,) = webhook.requests
    content = card_content(request)
    assert facts(content)["Entity"] == "de" and facts(content)["Stage"] == "extract"
    assert facts(content)["Try"] == "3 of 3"
    assert facts(content)["Batch job"] == message["batch"]["jobName"]
    assert facts(content)["Error"].startswith(f"AirflowException: de: extract: AWS Batch job {op.job_id} failed")
    assert actions(content) == {
        "Open in Airflow": ti.log_url,
        "Airflow run": RUN_URL,
        "CloudWatch logs": cloudwatch_url(stream),
        "Batch job": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{op.job_id}",
    }


# -- the Teams Lambda -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lam() -> ModuleType:
    """The handler module, loaded from its file the way the Lambda runtime loads it."""
    return load_teams_handler()


class Webhook:
    """A local HTTP server standing in for the Teams Workflows webhook: records requests, answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: deque[tuple[int, dict[str, str]]] = deque()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                webhook.requests.append(
                    {"at": time.monotonic(), "path": self.path, "headers": dict(self.headers), "body": body}
                )
                status, headers = webhook.answers.popleft() if webhook.answers else (202, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/workflows/entity-etl/triggers/manual/paths/invoke?sig={SIG}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.stop()


def teams_setup(webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> str:
    """The webhook secret and the DLQ in (moto) AWS, the Lambda's environment; returns the DLQ URL."""
    boto3.client("secretsmanager").create_secret(
        Name="teams/entity-etl-webhook", SecretString=json.dumps({"webhook_url": webhook.url})
    )
    dlq = boto3.client("sqs").create_queue(QueueName="teams-notifications-dlq")["QueueUrl"]
    for name, value in {
        "TEAMS_WEBHOOK_SECRET_ID": "teams/entity-etl-webhook",
        "DEAD_LETTER_QUEUE_URL": dlq,
        "TEAMS_MAX_ATTEMPTS": "3",
        "TEAMS_RETRY_BASE_S": "0.01",
        "TEAMS_RETRY_MAX_S": "0.02",
        "TEAMS_RETRY_AFTER_MAX_S": "0.3",
        "TEAMS_HTTP_TIMEOUT_S": "5",
    }.items():
        monkeypatch.setenv(name, value)
    return dlq


@pytest.fixture
def teams(aws: MotoServer, webhook: Webhook, lam: ModuleType, monkeypatch: pytest.MonkeyPatch) -> str:
    lam.reset_caches()  # a fresh container
    return teams_setup(webhook, monkeypatch)


@dataclass
class LambdaContext:
    aws_request_id: str = "3f0c2a44-1b6e-4d7a-9c1e-5a2b7d9e8f10"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def sns_event(message: str, message_id: str = "95df01b4-ee98-5cb9-9903-4c221d41eb5e") -> dict[str, Any]:
    """The event SNS invokes a subscribed Lambda with."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"arn:aws:sns:{REGION}:123456789012:etl-notifications:2bcfbf39",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": f"arn:aws:sns:{REGION}:123456789012:etl-notifications",
                    "Subject": None,
                    "Message": message,
                    "Timestamp": "2026-11-03T00:42:11.000Z",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def card_content(request: dict[str, Any]) -> dict[str, Any]:
    """The Adaptive Card of a recorded webhook request, after checking the Teams message envelope."""
    assert request["headers"]["Content-Type"] == "application/json"
    message = json.loads(request["body"])
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content: dict[str, Any] = attachment["content"]
    assert content["type"] == "AdaptiveCard" and content["version"] == "1.4"
    return content


def unescape(text: str) -> str:
    """A card value as Teams shows it: the handler backslash-escapes Markdown characters."""
    return re.sub(r"\\(.)", r"\1", text)


def facts(content: dict[str, Any]) -> dict[str, str]:
    (fact_set,) = [block for block in content["body"] if block["type"] == "FactSet"]
    return {fact["title"]: unescape(fact["value"]) for fact in fact_set["facts"]}


def actions(content: dict[str, Any]) -> dict[str, str]:
    assert all(action["type"] == "Action.OpenUrl" for action in content["actions"])
    return {action["title"]: action["url"] for action in content["actions"]}


def dead_letters(dlq: str) -> list[dict[str, Any]]:
    return [m["body"] for m in drain(dlq)]


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    assert SIG not in out  # the webhook URL's signature never reaches a log
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def task_failed_message(de_dag: Any) -> str:
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=3, max_tries=2)
    event = build_event("task_failed", context(de_dag, ti, exception=OSError("source unreachable")), entity="de")
    return json.dumps(event)


def test_card_of_each_kind(teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None) -> None:
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=3, max_tries=2)
    run = DagRun(RUN_ID, START + dt.timedelta(days=1), START + dt.timedelta(days=1, minutes=12))
    ti.xcoms[("publish_loaded", "return_value")] = {"row_counts": {"loaded": 1150}}
    events = {
        "task_failed": build_event("task_failed", context(de_dag, ti, exception=OSError("source unreachable"))),
        "dag_run_failed": build_event("dag_run_failed", context(de_dag, ti, reason="task_failure")),
        "run_succeeded": build_event("run_succeeded", context(de_dag, ti, dag_run=run)),
        "run_too_long": build_event(
            "run_too_long",
            {
                "dag_run": {"dag_id": "etl_de", "dag_run_id": RUN_ID, "queued_at": "2026-11-03T00:00:05Z"},
                "deadline": {"deadline_time": "2026-11-03T02:00:05Z"},
            },
            entity="de",
        ),
    }
    for kind, event in events.items():
        assert lam.handler(sns_event(json.dumps(event), message_id=kind), LambdaContext()) == {
            "delivered": 1,
            "dead_lettered": 0,
        }
    cards = [card_content(request) for request in webhook.requests]
    titles = [card["body"][0]["text"] for card in cards]
    assert titles == [
        "❌ de: extract failed",
        "❌ de: run failed at extract",
        "✅ de: run succeeded",
        "⏰ de: run is taking too long",
    ]
    failed, run_failed, succeeded, too_long = (facts(card) for card in cards)
    assert failed["Entity"] == "de" and failed["Stage"] == "extract" and failed["Try"] == "3 of 3"
    assert failed["Error"] == "OSError: source unreachable"
    assert failed["Data interval"] == "2026-11-02T00:00:00+00:00 → 2026-11-03T00:00:00+00:00"
    assert actions(cards[0]) == {"Open in Airflow": ti.log_url, "Airflow run": RUN_URL}
    assert run_failed["Reason"] == "task_failure" and "Error" not in run_failed
    assert succeeded["Rows loaded"] == "1150" and succeeded["Duration"] == "720 s"
    assert actions(cards[2]) == {"Open in Airflow": RUN_URL}
    assert too_long["Deadline"] == "2026-11-03T02:00:05Z" and too_long["Queued at"] == "2026-11-03T00:00:05Z"


def test_429_is_retried_after_retry_after_and_delivered_once(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.answers.append((429, {"Retry-After": "5"}))  # capped at TEAMS_RETRY_AFTER_MAX_S=0.3
    webhook.answers.append((200, {}))
    result = lam.handler(sns_event(task_failed_message(de_dag)), LambdaContext())

    assert result == {"delivered": 1, "dead_lettered": 0}
    first, second = webhook.requests
    assert first["body"] == second["body"]
    assert 0.3 <= second["at"] - first["at"] < 2.0  # waited for Retry-After (capped), not the 0.01 s backoff
    assert dead_letters(teams) == []
    logs = log_lines(capsys)
    assert [line["message"] for line in logs] == ["Teams delivery failed; retrying", "delivered to Teams"]
    assert logs[0]["error"] == "HTTP 429" and logs[0]["delay_s"] == 0.3 and logs[1]["attempt"] == 2


def test_repeated_5xx_goes_to_the_dead_letter_queue(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook.answers.extend([(500, {}), (502, {}), (503, {})])
    message = task_failed_message(de_dag)
    result = lam.handler(sns_event(message), LambdaContext())

    assert result == {"delivered": 0, "dead_lettered": 1}
    assert len(webhook.requests) == 3  # TEAMS_MAX_ATTEMPTS
    (letter,) = dead_letters(teams)
    assert letter["message"] == message  # the original, byte for byte
    assert letter["reason_code"] == "delivery_failed"
    assert letter["reason"] == "delivery_failed: HTTP 503 after 3 attempts"
    assert letter["sns_message_id"] == "95df01b4-ee98-5cb9-9903-4c221d41eb5e"
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert "NOT delivered" in error["message"] and error["reason_code"] == "delivery_failed"
    assert (error["kind"], error["entity"]) == ("task_failed", "de")


def test_an_unreachable_webhook_goes_to_the_dead_letter_queue(
    aws: MotoServer,
    lam: ModuleType,
    de_dag: Any,
    airflow_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lam.reset_caches()
    closed = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}/workflows/{SIG}")  # nothing listens there
    dlq = teams_setup(closed, monkeypatch)  # type: ignore[arg-type]
    message = task_failed_message(de_dag)
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    (letter,) = dead_letters(dlq)
    assert letter["message"] == message
    assert letter["reason_code"] == "delivery_failed"
    assert letter["reason"].endswith("after 3 attempts") and "refused" in letter["reason"].lower()
    lines = log_lines(capsys)
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert "NOT delivered" in error["message"]
    assert all(SIG not in json.dumps(line) for line in lines)  # the signed URL is never logged


def test_a_rejected_card_is_not_retried(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None
) -> None:
    webhook.answers.append((400, {}))
    assert lam.handler(sns_event(task_failed_message(de_dag)), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert len(webhook.requests) == 1
    (letter,) = dead_letters(teams)
    assert letter["reason"] == "webhook_rejected: the webhook answered HTTP 400"


def test_missing_webhook_secret_goes_to_the_dead_letter_queue(
    teams: str,
    webhook: Webhook,
    lam: ModuleType,
    de_dag: Any,
    airflow_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TEAMS_WEBHOOK_SECRET_ID", "teams/no-such-secret")
    message = task_failed_message(de_dag)
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert webhook.requests == []
    (letter,) = dead_letters(teams)
    assert letter["message"] == message
    assert letter["reason"] == "webhook_secret_unavailable: secret teams/no-such-secret: ResourceNotFoundException"
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert error["reason_code"] == "webhook_secret_unavailable" and error["request_id"] == LambdaContext.aws_request_id


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Task failed!!! (not JSON)", "malformed_message: the SNS message is not JSON"),
        ('["a", "list"]', "malformed_message: the SNS message is not a JSON object"),
        ('{"schema_version": 1, "kind": "task_exploded"}', "unknown_kind: unknown kind 'task_exploded'"),
        ('{"schema_version": 2, "kind": "task_failed"}', "unknown_kind: unsupported schema_version 2"),
        ('{"hello": "world"}', "unknown_kind: neither an entity-etl event nor an AWS Batch event"),
        (
            '{"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": {"status": "SUCCEEDED"}}',
            "unknown_kind: Batch job state 'SUCCEEDED' is not alerted on",
        ),
    ],
)
def test_malformed_or_unknown_messages_go_to_the_dead_letter_queue(
    teams: str, webhook: Webhook, lam: ModuleType, message: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert webhook.requests == []
    (letter,) = dead_letters(teams)
    assert (letter["message"], letter["reason"]) == (message, reason)
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert error["reason_code"] == reason.split(":")[0]


def test_a_message_too_big_for_sqs_is_dead_lettered_truncated(teams: str, lam: ModuleType) -> None:
    message = '{"kind": "task_failed", "error": "' + '\\"é' * 60_000 + '"}'  # 240 KB; JSON-escaped it is more
    assert len(message.encode()) < 256 * 1024  # SNS takes it
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    (letter,) = dead_letters(teams)
    assert letter["message_truncated"] is True
    assert message.startswith(letter["message"]) and len(letter["message"]) > 100_000
    assert letter["reason_code"] == "unknown_kind"


def test_without_a_dead_letter_queue_the_invocation_fails(
    teams: str, lam: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never dropped silently: Lambda then retries and hands the event to its on-failure destination."""
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    with pytest.raises(RuntimeError, match="could not deliver or dead-letter SNS message"):
        lam.handler(sns_event("not json"), LambdaContext())


MALFORMED_ENVELOPES = {
    "empty object": ({}, "the invocation event has no Records: not an SNS event"),
    "EventBridge event straight to the function": (
        json.loads((LAMBDA_DIR / "events" / "batch-job-failed.json").read_text()),
        "an EventBridge event delivered straight to the function, not through the SNS topic "
        "(the rules must target the topic)",
    ),
    "Records not a list": (
        {"Records": {"Sns": {"Message": "{}"}}},
        "the invocation event's Records is a dict, not a list",
    ),
    "Records null": ({"Records": None}, "the invocation event's Records is a NoneType, not a list"),
    "a list": ([{"Sns": {"Message": "{}"}}], "the invocation event is a list, not an SNS event"),
    "a string": ("hello", "the invocation event is a str, not an SNS event"),
}


@pytest.mark.parametrize(("event", "detail"), MALFORMED_ENVELOPES.values(), ids=MALFORMED_ENVELOPES.keys())
def test_an_invocation_event_that_is_not_an_sns_event_is_dead_lettered_whole(
    teams: str, webhook: Webhook, lam: ModuleType, event: Any, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lam.handler(event, LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert webhook.requests == []
    (letter,) = dead_letters(teams)
    assert json.loads(letter["message"]) == event  # the raw event, whole
    assert letter["reason_code"] == "malformed_event"
    assert letter["reason"] == f"malformed_event: {detail}"
    assert letter["sns_message_id"] is None and letter["message_truncated"] is False
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert "NOT an SNS event" in error["message"] and error["reason_code"] == "malformed_event"
    assert error["reason"] == detail and error["request_id"] == LambdaContext.aws_request_id
    assert error["event_type"] == type(event).__name__


def test_an_empty_records_list_is_nothing_to_do(
    teams: str, webhook: Webhook, lam: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lam.handler({"Records": []}, LambdaContext()) == {"delivered": 0, "dead_lettered": 0}
    assert webhook.requests == []
    assert dead_letters(teams) == []
    assert [line for line in log_lines(capsys) if line["level"] == "ERROR"] == []


def test_a_record_that_is_not_an_sns_record_is_dead_lettered_and_the_others_delivered(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad record must not fail the invocation: Lambda's retry would post the good ones a second time."""
    message = task_failed_message(de_dag)
    (good,) = sns_event(message)["Records"]
    sqs_record = {"messageId": "059f36b4", "eventSource": "aws:sqs", "body": "{}"}
    event = {"Records": ["x", good, sqs_record, None]}

    assert lam.handler(event, LambdaContext()) == {"delivered": 1, "dead_lettered": 3}
    (request,) = webhook.requests  # the good record, exactly once
    assert facts(card_content(request))["Stage"] == "extract"
    letters = dead_letters(teams)
    assert {letter["reason_code"] for letter in letters} == {"malformed_event"}
    assert sorted(((json.loads(letter["message"]), letter["reason"]) for letter in letters), key=str) == sorted(
        [
            ("x", "malformed_event: record 0 is a str, not an SNS record"),
            (sqs_record, "malformed_event: record 2 has no Sns section (event source 'aws:sqs'): not an SNS record"),
            (None, "malformed_event: record 3 is a NoneType, not an SNS record"),
        ],
        key=str,
    )
    errors = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert sorted(line["record_index"] for line in errors) == [0, 2, 3]
    assert all(line["reason_code"] == "malformed_event" for line in errors)


def test_a_malformed_invocation_event_without_a_dead_letter_queue_fails_the_invocation(
    teams: str, lam: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    with pytest.raises(RuntimeError, match="could not dead-letter a malformed invocation event"):
        lam.handler({}, LambdaContext())
    with pytest.raises(RuntimeError, match=r"could not deliver or dead-letter SNS message\(s\) \(record 0\)"):
        lam.handler({"Records": ["x"]}, LambdaContext())


def test_the_webhook_secret_is_read_once_per_container(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None
) -> None:
    message = task_failed_message(de_dag)
    lam.handler(sns_event(message), LambdaContext())
    boto3.client("secretsmanager").delete_secret(SecretId="teams/entity-etl-webhook", ForceDeleteWithoutRecovery=True)
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 1, "dead_lettered": 0}  # cached
    assert len(webhook.requests) == 2
    lam.reset_caches()  # a new container reads the secret again, and now finds none
    assert lam.handler(sns_event(message), LambdaContext()) == {"delivered": 0, "dead_lettered": 1}


def test_the_lambda_imports_neither_airflow_nor_entity_etl(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'entity_etl'):\n"
        "            raise ImportError(name + ' is not in the Lambda package')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import handler; print(handler.handler.__name__)"],
        env={"PYTHONPATH": f"{tmp_path}:{LAMBDA_DIR}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "handler"


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_both_ends_share_one_event_contract(partition: str, lam: ModuleType) -> None:
    """The Lambda's contract is the orchestration side's file, and its dependency-free CloudWatch link
    is the one the amazon provider builds; every event carries exactly the contract's fields."""
    from entity_etl import notification_contract as contract
    from entity_etl.orchestration.batch.diagnosis import cloudwatch_log_url as provider_url

    assert (LAMBDA_DIR / "notification_contract.py").resolve() == Path(contract.__file__).resolve()
    assert lam.KINDS == contract.KINDS
    group, stream = "/aws/batch/job", "etl-stage/default/0123abc"
    arn = f"arn:{partition}:batch:eu-west-1:123456789012:job/0123abc"
    assert contract.cloudwatch_log_url("eu-west-1", group, stream, arn) == provider_url(
        "eu-west-1", group, stream, partition
    )
    event = build_event("run_too_long", {"dag_run": {"dag_id": "d", "run_id": "r"}})
    assert tuple(event) == contract.EVENT_FIELDS and event["schema_version"] == contract.SCHEMA_VERSION


# -- EventBridge: Batch job failures and blocked queues -------------------------------------------
def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((LAMBDA_DIR / "events" / f"{name}.json").read_text()))


def test_batch_samples_become_cards(teams: str, webhook: Webhook, lam: ModuleType) -> None:
    failed, blocked = sample("batch-job-failed"), sample("batch-job-queue-blocked")
    for event in (failed, blocked):
        assert lam.handler(sns_event(json.dumps(event)), LambdaContext()) == {"delivered": 1, "dead_lettered": 0}
    failed_card, blocked_card = (card_content(request) for request in webhook.requests)

    job = failed["detail"]
    assert unescape(failed_card["body"][0]["text"]) == f"❌ AWS Batch job failed: {job['jobName']}"
    assert facts(failed_card) == {
        "Entity": "de",
        "Stage": "extract",
        "Run": RUN_ID,
        "Job": job["jobName"],
        "Job queue": "etl-fargate",
        "Status reason": "Essential container in task exited",
        "Exit code": "1",
        "Attempts": "1",
        "Region": REGION,
    }
    assert actions(failed_card) == {
        "CloudWatch logs": cloudwatch_url(job["container"]["logStreamName"]),
        "Batch job": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{job['jobId']}",
    }

    job = blocked["detail"]
    assert blocked_card["body"][0]["text"] == "⚠️ AWS Batch job queue blocked: etl-fargate"
    assert facts(blocked_card) == {
        "Entity": "jp",
        "Stage": "load_staging",
        "Run": "scheduled__2026-10-26T00:00:00+00:00",
        "Job": job["jobName"],
        "Job queue": "etl-fargate",
        "Status": "RUNNABLE",
        "Blocked because": job["statusReason"],
        "Region": REGION,
    }
    assert actions(blocked_card) == {
        "Job queue": f"https://console.aws.amazon.com/batch/home?region={REGION}#queues/detail/{job['jobQueue']}",
        "Batch job": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{job['jobId']}",
    }


def test_rule_patterns_route_exactly_the_batch_failures(teams: str, webhook: Webhook, lam: ModuleType) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    tap = sqs.create_queue(QueueName="batch-failures-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = json.loads(RULES_FILE.read_text())["rules"]
    assert {rule["Name"] for rule in rules} == {"entity-etl-batch-job-failed", "entity-etl-batch-job-queue-blocked"}
    for rule in rules:
        events.put_rule(
            Name=rule["Name"],
            Description=rule["Description"],
            State=rule["State"],
            EventPattern=json.dumps(rule["EventPattern"]),
        )
        events.put_targets(Rule=rule["Name"], Targets=[{"Id": "notifications", "Arn": tap_arn}])

    failed, blocked = sample("batch-job-failed"), sample("batch-job-queue-blocked")
    succeeded = json.loads(json.dumps(failed))
    succeeded["detail"].update(status="SUCCEEDED", jobId="a1" * 16)
    foreign_failure = json.loads(json.dumps(failed))
    foreign_failure["detail"].update(jobName="nightly-report", jobId="b2" * 16)
    foreign_block = json.loads(json.dumps(blocked))
    foreign_block["detail"].update(jobName="ml-training", jobId="c3" * 16)
    not_batch = {**failed, "source": "my.app"}
    sent = [failed, succeeded, foreign_failure, blocked, foreign_block, not_batch]
    response = events.put_events(
        Entries=[
            {
                "Source": e["source"],
                "DetailType": e["detail-type"],
                "Detail": json.dumps(e["detail"]),
                "Resources": e["resources"],
            }
            for e in sent
        ]
    )
    assert response["FailedEntryCount"] == 0

    delivered = [m["body"] for m in drain(tap, expect=2)]
    assert sorted((e["detail-type"], e["detail"]["jobId"]) for e in delivered) == sorted(
        [("Batch Job State Change", failed["detail"]["jobId"]), ("Batch Job Queue Blocked", blocked["detail"]["jobId"])]
    )
    # What EventBridge delivered (its envelope, as SNS passes it on) is what the Lambda formats.
    for event in delivered:
        assert event["source"] == "aws.batch" and event["region"] == REGION
        assert lam.handler(sns_event(json.dumps(event)), LambdaContext()) == {"delivered": 1, "dead_lettered": 0}
    titles = sorted(unescape(card_content(request)["body"][0]["text"]) for request in webhook.requests)
    assert titles == sorted(
        [f"❌ AWS Batch job failed: {failed['detail']['jobName']}", "⚠️ AWS Batch job queue blocked: etl-fargate"]
    )


# -- wired into a real DAG run --------------------------------------------------------------------
E2E_DAG = """
import datetime as dt

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from entity_etl.orchestration.notifier import SnsEventNotifier


def boom():
    raise ValueError("source unreachable: mysql://etl:hunter2@db.internal/source")


with DAG(
    "etl_zz",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    tags=["entity-etl", "entity:zz"],
    default_args={"retries": 0, "on_failure_callback": SnsEventNotifier("task_failed", entity="zz")},
    on_failure_callback=SnsEventNotifier("dag_run_failed", entity="zz"),
):
    PythonOperator(task_id="extract", python_callable=boom)
"""


@pytest.mark.slow
def test_callbacks_fire_in_a_real_airflow_run(aws: MotoServer, tmp_path: Path) -> None:
    """``airflow dags test``: Airflow's task runner and DAG-run callbacks hand the notifier their contexts."""
    import os

    topic, queue = sns_tap()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "etl_zz.py").write_text(E2E_DAG)
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__API__BASE_URL": BASE_URL,
        "ETL_NOTIFY_TOPIC_ARN": topic,
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "etl_zz", "2026-03-08T00:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "source unreachable" in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]

    events = {m["body"]["kind"]: m["body"] for m in drain(queue, expect=2)}
    assert set(events) == {"task_failed", "dag_run_failed"}
    task, dag_run = events["task_failed"], events["dag_run_failed"]
    run_id = task["run_id"]
    assert run_id.startswith("manual__")
    assert (task["entity"], task["dag_id"], task["task_id"], task["stage"]) == ("zz", "etl_zz", "extract", "extract")
    assert (task["try_number"], task["max_tries"]) == (1, 0)
    assert task["error"] == {"type": "ValueError", "message": "source unreachable: mysql://***:***@db.internal/source"}
    assert task["logical_date"].startswith("2026-03-08T00:00:00")
    assert task["airflow_url"] == f"{BASE_URL}/dags/etl_zz/runs/{quote(run_id)}/tasks/extract?try_number=1"
    assert task["airflow_run_url"] == f"{BASE_URL}/dags/etl_zz/runs/{quote(run_id, safe='')}"
    assert task["batch"] is None
    assert (dag_run["run_id"], dag_run["task_id"], dag_run["reason"]) == (run_id, "extract", "task_failure")
