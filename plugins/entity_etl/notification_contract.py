"""The run-notification event's contract: the one definition both of its ends import.

The Airflow side (:mod:`entity_etl.orchestration.notify`) builds and publishes these events to SNS;
the Teams Lambda (``lambdas/notifications``) reads them. Standard library only, and nothing else
from ``entity_etl``: the Lambda zip carries a copy of this file at its root (in the repository,
``lambdas/notifications/notification_contract.py`` is a symlink to it; see
``deploy/cloudformation/package_lambdas.py``).

An event is one JSON object, :class:`NotificationEvent` (``schema_version`` :data:`SCHEMA_VERSION`).
Every key of :data:`EVENT_FIELDS` is always present; a value that is not known is ``null``. The
same SNS topic also carries AWS Batch's EventBridge events (:data:`BATCH_FAILED`,
:data:`BATCH_BLOCKED`), which have AWS's shape, not this one.
"""

from __future__ import annotations

from typing import Any, TypedDict
from urllib.parse import quote_plus

SCHEMA_VERSION = 1
#: ``kind`` of an event: a task failed with no retries left, a DAG run failed, a run succeeded, a run
#: is still going a given time after it was queued (a Deadline Alert).
KINDS = ("task_failed", "dag_run_failed", "run_succeeded", "run_too_long")
#: The SNS message attributes an event is published with (a subscription can filter on them);
#: ``entity`` only when the event names one.
MESSAGE_ATTRIBUTES = ("kind", "schema_version", "source", "entity")

#: The EventBridge events of AWS Batch that reach the topic (``deploy/eventbridge/batch-failures.json``).
BATCH_SOURCE = "aws.batch"
BATCH_FAILED = "Batch Job State Change"
BATCH_BLOCKED = "Batch Job Queue Blocked"
#: Where AWS Batch writes a job's container log when the job definition names no awslogs group.
DEFAULT_BATCH_LOG_GROUP = "/aws/batch/job"


class DataInterval(TypedDict):
    start: str | None
    end: str | None


class EventError(TypedDict):
    """The error of a failure: the exception's type name and its message (truncated, redacted)."""

    type: str | None
    message: str


class RunSummary(TypedDict, total=False):
    """``run_succeeded``: the stages' statistics, plus what the DAG adds (the NPS DAG's ``report``)."""

    stages: dict[str, dict[str, Any]]
    row_counts: dict[str, Any] | None
    duration_s: float | None


class Deadline(TypedDict):
    """``run_too_long``: the Deadline Alert that fired and the run it is about."""

    deadline_time: str | None
    queued_at: str | None
    start_date: str | None
    state: Any
    max_duration_s: float | None


class NotificationEvent(TypedDict):
    """One event, as published (JSON) and read by the Teams Lambda."""

    schema_version: int
    kind: str
    source: str
    event_id: str
    emitted_at: str
    entity: str | None
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    stage: str | None
    logical_date: str | None
    data_interval: DataInterval
    try_number: int | None
    max_tries: int | None
    error: EventError | None
    reason: str | None
    #: the task's log page, else the run's page
    airflow_url: str | None
    airflow_run_url: str | None
    cloudwatch_log_url: str | None
    #: for a stage that ran on AWS Batch: what ``DescribeJobs`` says about the job
    batch: dict[str, Any] | None
    summary: dict[str, Any] | None
    deadline: Deadline | None


#: The keys of every event, in the order the notifier writes them.
EVENT_FIELDS: tuple[str, ...] = tuple(NotificationEvent.__annotations__)


def console_domain(arn: str | None) -> str:
    """The AWS console's domain for the partition of ``arn`` (``aws`` when there is none)."""
    partition = (arn or "arn:aws:").split(":")[1] if (arn or "").startswith("arn:") else "aws"
    return {"aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}.get(
        partition, "console.aws.amazon.com"
    )


def cloudwatch_log_url(region: str, log_group: str, log_stream: str, arn: str | None = None) -> str:
    """The CloudWatch console page of one log stream: the address the amazon provider's
    ``CloudWatchEventsLink`` builds, without importing Airflow. ``arn`` (of the job) picks the partition."""
    return (
        f"https://{console_domain(arn)}/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"{quote_plus(log_group)}/log-events/{quote_plus(log_stream)}"
    )
