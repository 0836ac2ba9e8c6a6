"""One contract suite for the other two ports that have an AWS and an embedded side:

* the completion publisher: ``SqsPublisher`` (SQS on moto) and ``OutboxPublisher`` (a JSON-lines file);
* the metrics sink: ``CloudWatchMetrics`` (PutMetricData on moto) and ``LogMetrics`` (a JSON log line).

Each test runs against both implementations, chosen the way the runtime chooses them
(``open_completion_publisher``, ``open_metrics``), and reads back through the medium itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.runtime.completion_events import (
    OutboxPublisher,
    SqsPublisher,
    entity_loaded_event,
    open_completion_publisher,
)
from entity_etl.runtime.metrics import CloudWatchMetrics, LogMetrics, open_metrics, stage_metrics
from entity_etl.runtime.stats import StageStats

STATS = {
    "extract": {"rows_out": 120},
    "load_staging": {"rows_out": 120},
    "dedupe": {"rows_out": 110, "duplicates_removed": 10},
    "load_target": {"rows_out": 110, "details": {"target_rows": 4000}},
}


def event(run_id: str = "scheduled__2026-01-01T00:00:00+00:00") -> dict[str, Any]:
    return entity_loaded_event(
        entity="xx",
        run_id=run_id,
        interval_start="2026-01-01T00:00:00+00:00",
        interval_end="2026-01-02T00:00:00+00:00",
        stats=STATS,
        extract_uri="s3://bucket/extracts/xx/run/_manifest.json",
    )


# -- completion publisher ----------------------------------------------------------------------
@pytest.fixture(params=[pytest.param("sqs", marks=pytest.mark.moto), "outbox"])
def published(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list]:
    """Point the runtime's publisher at one side; return a reader of what reached the medium."""
    if request.param == "sqs":
        request.getfixturevalue("aws")
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="entity-loaded")["QueueUrl"]
        monkeypatch.setenv("ETL_COMPLETION_QUEUE_URL", url)

        def read() -> list[dict[str, Any]]:
            bodies = []
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
                for message in messages:
                    bodies.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return bodies

        return read
    outbox = tmp_path / "outbox" / "entity-loaded.jsonl"
    monkeypatch.delenv("ETL_COMPLETION_QUEUE_URL", raising=False)
    monkeypatch.setenv("ETL_COMPLETION_OUTBOX", str(outbox))
    return lambda: [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]


def test_the_runtime_picks_the_publisher_from_the_settings(published: Callable[[], list], request: Any) -> None:
    expected = SqsPublisher if "sqs" in request.node.callspec.id else OutboxPublisher
    assert type(open_completion_publisher()) is expected


def test_an_event_arrives_exactly_as_published(published: Callable[[], list]) -> None:
    sent = event()
    where = open_completion_publisher().publish(sent)
    assert where
    assert published() == [sent]
    assert sent["row_counts"] == {
        "extracted": 120,
        "staged": 120,
        "duplicates_removed": 10,
        "loaded": 110,
        "target_rows": 4000,
    }


def test_a_republished_run_keeps_its_event_id_and_other_runs_get_their_own(published: Callable[[], list]) -> None:
    publisher = open_completion_publisher()
    for run_id in ("run-a", "run-a", "run-b"):  # a retry of run-a's publish task
        publisher.publish(event(run_id))
    got = published()
    assert [e["run_id"] for e in got] == ["run-a", "run-a", "run-b"]
    assert got[0]["event_id"] == got[1]["event_id"] != got[2]["event_id"]


def test_an_unserialisable_event_is_refused_and_nothing_is_published(published: Callable[[], list]) -> None:
    broken = {**event(), "row_counts": {"loaded": object()}}
    with pytest.raises(TypeError):
        open_completion_publisher().publish(broken)
    open_completion_publisher().publish(event())
    assert published() == [event()]  # no half-written line or message before the good one


def test_an_sqs_message_no_consumer_can_handle_lands_in_the_dead_letter_queue(aws: Any) -> None:
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="entity-loaded-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName="entity-loaded",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
            "VisibilityTimeout": "0",
        },
    )["QueueUrl"]
    sent = event()
    SqsPublisher(queue).publish(sent)
    for _ in range(2):  # a consumer that fails twice and never deletes the message
        assert len(sqs.receive_message(QueueUrl=queue).get("Messages", [])) == 1
    assert sqs.receive_message(QueueUrl=queue).get("Messages", []) == []
    (dead,) = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert json.loads(dead["Body"]) == sent  # kept, not lost


# -- metrics sink ------------------------------------------------------------------------------
@pytest.fixture(params=[pytest.param("cloudwatch", marks=pytest.mark.moto), "log"])
def emitted(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Callable[[str, str], dict[str, float]]:
    """Point the runtime's metrics at one side; return a reader: (entity, stage) -> {metric: sum}."""
    monkeypatch.setenv("ETL_METRICS", request.param)
    if request.param == "cloudwatch":
        request.getfixturevalue("aws")
        monkeypatch.setenv("ETL_METRICS_NAMESPACE", "EntityETLContract")
        cloudwatch = boto3.client("cloudwatch")

        def read_cloudwatch(entity: str, stage: str) -> dict[str, float]:
            dims = [{"Name": "entity", "Value": entity}, {"Name": "stage", "Value": stage}]
            names = sorted(
                m["MetricName"]
                for m in cloudwatch.list_metrics(Namespace="EntityETLContract", Dimensions=dims)["Metrics"]
                if sorted((d["Name"], d["Value"]) for d in m["Dimensions"]) == [("entity", entity), ("stage", stage)]
            )
            now = dt.datetime.now(dt.UTC)
            queries = [
                {
                    "Id": f"m{i}",
                    "MetricStat": {
                        "Metric": {"Namespace": "EntityETLContract", "MetricName": name, "Dimensions": dims},
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
                for i, name in enumerate(names)
            ]
            if not queries:
                return {}
            data = cloudwatch.get_metric_data(
                MetricDataQueries=queries,  # type: ignore[arg-type]
                StartTime=now - dt.timedelta(minutes=10),
                EndTime=now + dt.timedelta(minutes=10),
            )
            by_id = {r["Id"]: sum(r["Values"]) for r in data["MetricDataResults"]}
            return {name: by_id[f"m{i}"] for i, name in enumerate(names)}

        return read_cloudwatch
    caplog.set_level(logging.INFO, logger="entity_etl.runtime.metrics")

    def read_log(entity: str, stage: str) -> dict[str, float]:
        totals: dict[str, float] = {}
        for record in caplog.records:
            if record.name != "entity_etl.runtime.metrics":
                continue
            line = json.loads(record.getMessage())
            if (line["entity"], line["stage"]) == (entity, stage):
                for name, value in line["metrics"].items():
                    totals[name] = totals.get(name, 0.0) + value
        return totals

    return read_log


def stats(stage: str, rows_in: int, rows_out: int, dupes: int = 0) -> StageStats:
    return StageStats(
        entity="xx",
        stage=stage,
        run_id="r",
        rows_in=rows_in,
        rows_out=rows_out,
        duplicates_removed=dupes,
        bytes=2048,
        duration_s=1.5,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01.5+00:00",
    )


def test_the_runtime_picks_the_metrics_sink_from_the_settings(emitted: Any, request: Any) -> None:
    expected = CloudWatchMetrics if "cloudwatch" in request.node.callspec.id else LogMetrics
    assert type(open_metrics()) is expected


def test_stage_metrics_arrive_by_entity_and_stage(emitted: Callable[[str, str], dict[str, float]]) -> None:
    sink = open_metrics()
    sink.emit("xx", "dedupe", stage_metrics(stats("dedupe", 120, 110, 10), failed=False))
    sink.emit("xx", "extract", stage_metrics(stats("extract", 0, 120), failed=False))
    sink.emit("yy", "dedupe", stage_metrics(stats("dedupe", 7, 7), failed=False))
    assert emitted("xx", "dedupe") == {
        "Bytes": 2048.0,
        "DuplicatesRemoved": 10.0,
        "DurationSeconds": 1.5,
        "Failures": 0.0,
        "RowsIn": 120.0,
        "RowsOut": 110.0,
    }
    assert emitted("xx", "extract")["RowsOut"] == 120.0
    assert emitted("yy", "dedupe")["RowsIn"] == 7.0  # another entity's figures stay apart


def test_a_failed_stage_counts_one_failure_and_its_duration(emitted: Callable[[str, str], dict[str, float]]) -> None:
    sink = open_metrics()
    sink.emit("xx", "load_target", stage_metrics(None, failed=True, duration_s=4.0))
    sink.emit("xx", "load_target", stage_metrics(None, failed=True, duration_s=2.0))
    assert emitted("xx", "load_target") == {"Failures": 2.0, "DurationSeconds": 6.0}


def test_an_unknown_metrics_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_METRICS", "statsd")
    with pytest.raises(ValueError, match="ETL_METRICS='statsd': use 'cloudwatch' or 'log'"):
        open_metrics()
