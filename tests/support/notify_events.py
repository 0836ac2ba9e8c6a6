"""Run-notification test harness, Airflow side: a small task instance, callback contexts from the real
``etl_de`` DAG, and an SNS topic tapped by an SQS queue with raw delivery (what subscribers get)."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import boto3

ROOT = Path(__file__).resolve().parents[2]


LAMBDA_DIR = ROOT / "lambdas" / "notifications"


RULES_FILE = ROOT / "deploy" / "eventbridge" / "batch-failures.json"


REGION = "eu-west-1"


BASE_URL = "https://airflow.example.test"


RUN_ID = "scheduled__2026-11-02T00:00:00+00:00"


START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


END = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)


RUN_URL = f"{BASE_URL}/dags/etl_de/runs/{quote(RUN_ID, safe='')}"


SIG = "sig-9f8e7d6c5b4a"  # the signature in the webhook URL: must never reach a log


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


@dataclass
class DagRun:
    run_id: str
    start_date: dt.datetime
    end_date: dt.datetime
    logical_date: dt.datetime = START


class NoXComTaskInstance(TaskInstance):
    """A DAG callback's ``ti`` where XCom cannot be read (no supervisor to ask)."""

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        raise RuntimeError("no SUPERVISOR_COMMS")


def cloudwatch_url(stream: str, group: str = "/aws/batch/job") -> str:
    return (
        f"https://console.aws.amazon.com/cloudwatch/home?region={REGION}#logsV2:log-groups/log-group/"
        f"{quote_plus(group)}/log-events/{quote_plus(stream)}"
    )
