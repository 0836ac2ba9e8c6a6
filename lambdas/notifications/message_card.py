"""One SNS message (an Airflow notifier event or an AWS Batch EventBridge event) -> its card."""

from __future__ import annotations

import json
from typing import Any

from airflow_card import airflow_card
from batch_card import batch_card
from notification_contract import BATCH_BLOCKED, BATCH_FAILED, BATCH_SOURCE, KINDS, SCHEMA_VERSION
from undeliverable import Undeliverable


def build_card(raw_message: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(card message, log fields) for one SNS message. Raises :class:`Undeliverable` when it is unusable."""
    try:
        message = json.loads(raw_message)
    except (TypeError, ValueError):
        raise Undeliverable("malformed_message", "the SNS message is not JSON") from None
    if not isinstance(message, dict):
        raise Undeliverable("malformed_message", "the SNS message is not a JSON object")
    if message.get("source") == BATCH_SOURCE and "detail-type" in message:
        kind = message["detail-type"]
        if kind not in (BATCH_FAILED, BATCH_BLOCKED):
            raise Undeliverable("unknown_kind", f"unhandled AWS Batch event {kind!r}")
        detail = message.get("detail") if isinstance(message.get("detail"), dict) else {}
        return batch_card(message), {"kind": kind, "job_id": detail.get("jobId")}
    if "kind" in message or "schema_version" in message:
        if message.get("schema_version") != SCHEMA_VERSION:
            raise Undeliverable("unknown_kind", f"unsupported schema_version {message.get('schema_version')!r}")
        if message.get("kind") not in KINDS:
            raise Undeliverable("unknown_kind", f"unknown kind {message.get('kind')!r}")
        try:
            card = airflow_card(message)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise Undeliverable("malformed_message", f"{message['kind']} event: {type(exc).__name__}") from None
        return card, {"kind": message["kind"], "entity": message.get("entity"), "event_id": message.get("event_id")}
    raise Undeliverable("unknown_kind", "neither an entity-etl event nor an AWS Batch event")
