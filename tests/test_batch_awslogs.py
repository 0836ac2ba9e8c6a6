"""On the ``batch`` backend the job's CloudWatch log is streamed into the task log, against moto.

The entity DAG's stage tasks have the provider's ``awslogs_enabled`` on. moto runs no container
without Docker, so the test writes what the container would, the stage's own log lines, into the
job's log stream (``/aws/batch/job``, ``<job definition>/default/<job id>``, where moto's job
description points) as soon as the job is submitted; the provider's log fetcher must then read
them from moto's CloudWatch Logs into the task's log.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from entity_etl.config.loader import find_entity
from entity_etl.orchestration.batch.provider_job import StageBatchJob
from entity_etl.orchestration.factory import AWSLOGS_FETCH_INTERVAL, build_entity_dag
from entity_etl.orchestration.stage_operator import EntityStageOperator
from support.servers import MotoServer
from test_batch_backend import BUCKET, JOB_DEFINITION, RUN_ID, STORE_URL, client, create_batch_infra, stats_key
from test_batch_backend import task_context as batch_task_context

pytestmark = pytest.mark.moto

LOG_GROUP = "/aws/batch/job"  # AWS Batch's default group, the one the provider reads without options
CONTAINER_LINES = [
    "2026-11-02T00:00:01.000Z INFO entity_etl.runtime.stages: de: extract: started at 2026-11-02T00:00:01Z",
    "2026-11-02T00:00:01.200Z INFO entity_etl.runtime.stages: de: extract: plan: 3 chunk(s) to do, 0 resumed",
    "2026-11-02T00:00:09.000Z INFO entity_etl.runtime.stages: de: extract: chunk 3/3 done: 1,234 rows",
    "WARNING: de: extract: metrics not sent: the metrics backend is down",
]


@pytest.fixture
def batch_env(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Batch backend, extracts in S3, and no 1-10 s sleeps between the provider's polls."""
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

    monkeypatch.setenv("ETL_COMPUTE_BACKEND", "batch")
    monkeypatch.setenv("ETL_OBJECT_STORE_URL", STORE_URL)
    for name in ("ETL_SECRETS_BACKEND", "ETL_SECRETS_PREFIX", "ETL_TRANSLATOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MIN", 0)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MAX", 0)
    monkeypatch.setattr(BatchClientHook, "exponential_delay", staticmethod(lambda tries: 0))
    return aws


def container_writes_its_log(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> list[str]:
    """After each submission, put :data:`CONTAINER_LINES` into the job's log stream; returns the streams."""
    logs = client("logs", endpoint)
    streams: list[str] = []
    submit = StageBatchJob.submit_job

    def submit_and_log(self: StageBatchJob, context: Any) -> None:
        submit(self, context)
        stream = f"{JOB_DEFINITION}/default/{self.job_id}"
        if not logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]:
            logs.create_log_group(logGroupName=LOG_GROUP)
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": line} for i, line in enumerate(CONTAINER_LINES)]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)
        streams.append(stream)

    monkeypatch.setattr(StageBatchJob, "submit_job", submit_and_log)
    return streams


def dag_task(stage: str) -> EntityStageOperator:
    """The stage task as the entity DAG builds it (with the DAG's own Batch arguments)."""
    task = build_entity_dag(find_entity("de")).get_task(stage)
    assert isinstance(task, EntityStageOperator)
    return task


def test_the_entity_dags_stage_tasks_stream_the_job_log() -> None:
    task = dag_task("extract")
    assert task.awslogs_enabled is True
    assert task.awslogs_fetch_interval == AWSLOGS_FETCH_INTERVAL
    job = task._new_batch_job()
    assert (job.awslogs_enabled, job.awslogs_fetch_interval) == (True, AWSLOGS_FETCH_INTERVAL)


def run_extract_job(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], dict[str, Any]]:
    """The Batch infrastructure, the job's statistics in S3 and the container's log: what a job needs."""
    create_batch_infra(server.endpoint)
    stats = {"entity": "de", "stage": "extract", "rows_out": 1234}
    s3 = client("s3", server.endpoint)
    s3.put_object(Bucket=BUCKET, Key=stats_key("de", RUN_ID, "extract"), Body=json.dumps(stats).encode())
    return container_writes_its_log(monkeypatch, server.endpoint), stats


@contextlib.contextmanager
def task_log() -> Iterator[list[tuple[str, str]]]:
    """The task's log lines as ``(level, message)``: what the task logger (structlog, under the Task
    SDK) writes to the task log while the block runs."""
    with structlog.testing.capture_logs() as events:
        lines: list[tuple[str, str]] = []
        yield lines
    lines.extend((str(e.get("log_level")), str(e.get("event"))) for e in events)


def test_the_containers_cloudwatch_log_is_in_the_task_log(
    batch_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams, stats = run_extract_job(batch_env, monkeypatch)
    task = dag_task("extract")
    with task_log() as lines:
        result = task.execute(batch_task_context())
    assert result == {**stats, "job_id": task.job_id}
    assert streams == [f"{JOB_DEFINITION}/default/{task.job_id}"]
    # Each container line, in order, with its CloudWatch time in front; a WARNING line stays a warning.
    forwarded = [(level, m) for level, m in lines if any(m.endswith(c) for c in CONTAINER_LINES)]
    assert [m.split("] ", 1)[1] for _, m in forwarded] == CONTAINER_LINES, lines
    assert [level for level, _ in forwarded] == ["info", "info", "info", "warning"]


def test_a_deferred_task_reads_the_job_log_when_it_resumes(
    batch_env: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deferred, the task resumes in ``execute_complete`` once the trigger saw the job end: the provider
    then reads the job's log in one request."""
    streams, stats = run_extract_job(batch_env, monkeypatch)
    task = dag_task("extract")
    task.deferrable = True
    context = batch_task_context()
    task.execute(context)  # moto's job has ended before the task would defer
    assert streams == [f"{JOB_DEFINITION}/default/{task.job_id}"]
    with task_log() as lines:
        result = task.execute_complete(context, {"status": "success", "job_id": task.job_id})
    assert result == {**stats, "job_id": task.job_id}
    messages = [m for _, m in lines]
    assert [m for m in messages if m in CONTAINER_LINES] == CONTAINER_LINES, messages


def test_a_task_without_awslogs_shows_no_container_log(batch_env: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same job with the provider's default (off) leaves the lines in CloudWatch only."""
    streams, _ = run_extract_job(batch_env, monkeypatch)
    task = dag_task("extract")
    task.awslogs_enabled = False
    with task_log() as lines:
        task.execute(batch_task_context())
    assert streams == [f"{JOB_DEFINITION}/default/{task.job_id}"]
    messages = [m for _, m in lines]
    assert any("succeeded" in m for m in messages)  # the task did log (the job, its end) ...
    assert not any(m.endswith(line) for line in CONTAINER_LINES for m in messages)  # ... but not the container's
