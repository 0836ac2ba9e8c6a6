"""CTR records that can never be processed -> the SQS dead-letter queue ``CTR_DLQ_URL``.

A record that is not base64, not JSON, not a CTR, has no contact id, or is an opted-in contact with
no valid (E.164) customer number fails the same way on every retry. Reported as a batch item
failure it would hold its shard back (Lambda retries from the first failed record) until the event
source mapping gives up on the whole range. Instead it is sent here and the batch goes on.

One message per record, a JSON body:

``{"reason": "invalid_phone_number", "detail": "...", "sequence_number": "4965...", "shard_id":
"shardId-000000000000", "partition_key": "...", "event_source_arn": "arn:aws:kinesis:...",
"approximate_arrival_timestamp": 1764000000.123, "contact_id": "7c9b..." or null}``

and a message attribute ``reason``. The record's data is NOT copied (a CTR holds the customer's full
number); read it back from the stream within its retention: ``GetShardIterator`` with
``AT_SEQUENCE_NUMBER`` on ``shard_id`` and ``sequence_number``. Any phone number left in the body is
masked as a second guard.
"""

from __future__ import annotations

import json
from typing import Any

from . import clients
from .ctr import BadRecord
from .phone import mask_phones_in_text


def message(record: dict[str, Any], error: BadRecord) -> dict[str, Any]:
    """The message body (before masking) for one Lambda Kinesis event record."""
    payload = record.get("kinesis") or {}
    event_id = str(record.get("eventID") or "")
    return {
        "reason": error.code,
        "detail": error.detail,
        "sequence_number": payload.get("sequenceNumber"),
        "shard_id": event_id.split(":", 1)[0] if ":" in event_id else None,
        "partition_key": payload.get("partitionKey"),
        "event_source_arn": record.get("eventSourceArn"),
        "approximate_arrival_timestamp": payload.get("approximateArrivalTimestamp"),
        "contact_id": error.contact_id,
    }


def send(queue_url: str, record: dict[str, Any], error: BadRecord) -> str:
    """Send one dead letter; return its SQS message id. Raises the client's error when it fails."""
    body = mask_phones_in_text(json.dumps(message(record, error), sort_keys=True))
    response = clients.sqs().send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={"reason": {"DataType": "String", "StringValue": error.code}},
    )
    return str(response["MessageId"])
