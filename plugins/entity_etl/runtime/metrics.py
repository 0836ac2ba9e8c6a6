"""Custom per-stage metrics: rows, duplicates, duration and failures, dimensions entity and stage.

* :class:`CloudWatchMetrics` (``ETL_METRICS=cloudwatch``): ``PutMetricData`` in namespace
  ``ETL_METRICS_NAMESPACE`` (default ``EntityETL``). PutMetricData rather than the embedded metric
  format because Batch's awslogs driver does not extract EMF from container output.
* :class:`LogMetrics` (the embedded default): one JSON log line per stage.

Airflow's own StatsD metrics are left alone.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from typing import Any

from entity_etl.runtime.stats import StageStats

log = logging.getLogger(__name__)


def stage_metrics(
    stats: StageStats | None, *, failed: bool, duration_s: float | None = None
) -> dict[str, tuple[float, str]]:
    """Metric name -> (value, unit) for one finished stage."""
    metrics: dict[str, tuple[float, str]] = {"Failures": (1.0 if failed else 0.0, "Count")}
    if stats is not None:
        metrics.update(
            RowsIn=(float(stats.rows_in), "Count"),
            RowsOut=(float(stats.rows_out), "Count"),
            DuplicatesRemoved=(float(stats.duplicates_removed), "Count"),
            Bytes=(float(stats.bytes), "Bytes"),
            DurationSeconds=(stats.duration_s, "Seconds"),
        )
    elif duration_s is not None:
        metrics["DurationSeconds"] = (duration_s, "Seconds")
    return metrics


class MetricsSink(ABC):
    @abstractmethod
    def emit(self, entity: str, stage: str, metrics: dict[str, tuple[float, str]]) -> None: ...


class LogMetrics(MetricsSink):
    def emit(self, entity: str, stage: str, metrics: dict[str, tuple[float, str]]) -> None:
        log.info(json.dumps({"metrics": {k: v for k, (v, _) in metrics.items()}, "entity": entity, "stage": stage}))


class CloudWatchMetrics(MetricsSink):
    def __init__(self, namespace: str, client: Any = None) -> None:
        import boto3

        self.namespace = namespace
        self.client = client or boto3.client("cloudwatch")

    def emit(self, entity: str, stage: str, metrics: dict[str, tuple[float, str]]) -> None:
        dimensions = [{"Name": "entity", "Value": entity}, {"Name": "stage", "Value": stage}]
        self.client.put_metric_data(
            Namespace=self.namespace,
            MetricData=[
                {"MetricName": name, "Dimensions": dimensions, "Value": value, "Unit": unit}
                for name, (value, unit) in metrics.items()
            ],
        )


def open_metrics() -> MetricsSink:
    kind = os.environ.get("ETL_METRICS", "log")
    if kind == "cloudwatch":
        return CloudWatchMetrics(os.environ.get("ETL_METRICS_NAMESPACE", "EntityETL"))
    if kind == "log":
        return LogMetrics()
    raise ValueError(f"ETL_METRICS={kind!r}: use 'cloudwatch' or 'log'")
