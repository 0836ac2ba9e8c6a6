"""The dead-letter SQS queue: an undeliverable message, as it came, with the reason."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

from clients import client
from undeliverable import Undeliverable

MAX_DLQ_BODY_BYTES = 256 * 1024 - 2048  # an SQS message body is at most 256 KiB; room for attributes


def dead_letter(raw_message: str, reason: Undeliverable, record: Mapping[str, Any]) -> str:
    """Send the original message and the reason to the dead-letter queue; return the SQS message id."""
    queue_url = os.environ.get("DEAD_LETTER_QUEUE_URL")
    if not queue_url:
        raise RuntimeError("DEAD_LETTER_QUEUE_URL is not set: cannot keep an undeliverable message")
    sns = record.get("Sns")
    sns = sns if isinstance(sns, Mapping) else {}
    message, truncated = raw_message, False
    while True:
        body = json.dumps(
            {
                "reason": str(reason),
                "reason_code": reason.code,
                "message": message,
                "message_truncated": truncated,
                "sns_message_id": sns.get("MessageId"),
                "topic_arn": sns.get("TopicArn"),
                "sns_timestamp": sns.get("Timestamp"),
                "dead_lettered_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            },
            ensure_ascii=False,
        )
        if len(body.encode("utf-8")) <= MAX_DLQ_BODY_BYTES:
            break
        # An SNS message may be 256 KiB and JSON-escaping it can make it longer: keep as much as fits.
        message, truncated = message[: len(message) * 3 // 4], True
    response = client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={"reason_code": {"DataType": "String", "StringValue": reason.code}},
    )
    return str(response["MessageId"])
