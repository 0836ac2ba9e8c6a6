"""The "entity loaded" event for downstream systems, published after load_target succeeds.

* :class:`SqsPublisher` (``ETL_COMPLETION_QUEUE_URL`` set): one SQS message per run. The queue's
  redrive policy sends messages consumers cannot process to its dead-letter queue (see README).
* :class:`OutboxPublisher` (the embedded default): appends the same JSON to a local JSON-lines file.

Messages carry a deterministic ``event_id`` (entity + run id), so a consumer can drop the duplicate a
retried publish may produce.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def row_counts(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """A run's row counts from its per-stage statistics (``StageStats.to_dict()`` by stage name)."""

    def rows(stage: str, key: str = "rows_out") -> int:
        return int(stats.get(stage, {}).get(key, 0))

    return {
        "extracted": rows("extract"),
        "staged": rows("load_staging"),
        "duplicates_removed": rows("dedupe", "duplicates_removed"),
        "loaded": rows("load_target"),
        "target_rows": int(stats.get("load_target", {}).get("details", {}).get("target_rows", 0)),
    }


def entity_loaded_event(
    *,
    entity: str,
    run_id: str,
    interval_start: str,
    interval_end: str,
    stats: dict[str, dict[str, Any]],
    extract_uri: str,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event": "entity_loaded",
        "event_id": hashlib.sha256(f"{entity}\0{run_id}".encode()).hexdigest()[:32],
        "entity": entity,
        "run_id": run_id,
        "data_interval": {"start": interval_start, "end": interval_end},
        "row_counts": row_counts(stats),
        "extract_uri": extract_uri,
    }


class CompletionPublisher(ABC):
    @abstractmethod
    def publish(self, event: dict[str, Any]) -> str:
        """Publish ``event``; return where it went (message id or file)."""


class SqsPublisher(CompletionPublisher):
    def __init__(self, queue_url: str, client: Any = None) -> None:
        import boto3

        self.queue_url = queue_url
        self.client = client or boto3.client("sqs")

    def publish(self, event: dict[str, Any]) -> str:
        response = self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(event, sort_keys=True),
            MessageAttributes={
                "event": {"DataType": "String", "StringValue": event["event"]},
                "entity": {"DataType": "String", "StringValue": event["entity"]},
                "schema_version": {"DataType": "Number", "StringValue": str(event["schema_version"])},
            },
        )
        return str(response["MessageId"])


class OutboxPublisher(CompletionPublisher):
    def __init__(self, path: Path) -> None:
        self.path = path

    def publish(self, event: dict[str, Any]) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, sort_keys=True) + "\n")
        return str(self.path)


def open_completion_publisher() -> CompletionPublisher:
    queue_url = os.environ.get("ETL_COMPLETION_QUEUE_URL")
    if queue_url:
        return SqsPublisher(queue_url)
    from entity_etl.runtime.run_store import default_state_path

    return OutboxPublisher(
        Path(os.environ.get("ETL_COMPLETION_OUTBOX") or default_state_path().with_name("entity-loaded.jsonl"))
    )
