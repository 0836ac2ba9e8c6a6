"""Reading the invocation event: its SNS records, and why an event is not an SNS event."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from undeliverable import Undeliverable


def as_json(value: Any) -> str:
    """Any part of an invocation event, as JSON text for the dead-letter queue (never raises)."""
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. a circular structure: no Lambda event is one, but keep it
        return repr(value)


def sns_message(record: Any, index: int) -> tuple[str, str | None]:
    """(message text, SNS message id) of one record. Raises :class:`Undeliverable` for a non-SNS record."""
    if not isinstance(record, Mapping):
        raise Undeliverable("malformed_event", f"record {index} is a {type(record).__name__}, not an SNS record")
    sns = record.get("Sns")
    if not isinstance(sns, Mapping):
        source = record.get("EventSource") or record.get("eventSource")
        raise Undeliverable(
            "malformed_event",
            f"record {index} has no Sns section (event source {source!r}): not an SNS record",
        )
    message_id = sns.get("MessageId")
    raw = sns.get("Message")
    return (raw if isinstance(raw, str) else json.dumps(raw)), (str(message_id) if message_id is not None else None)


def envelope_problem(event: Any) -> str:
    """Why an invocation event is not an SNS event (one with a ``Records`` list)."""
    if not isinstance(event, Mapping):
        return f"the invocation event is a {type(event).__name__}, not an SNS event"
    if "detail-type" in event and "source" in event:
        return (
            "an EventBridge event delivered straight to the function, not through the SNS topic "
            "(the rules must target the topic)"
        )
    if "Records" in event:
        return f"the invocation event's Records is a {type(event['Records']).__name__}, not a list"
    return "the invocation event has no Records: not an SNS event"
