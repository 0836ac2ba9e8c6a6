"""Publishing an event to SNS, with boto3 directly.

Not the amazon provider's ``SnsHook``: the same code then runs in the worker, the DAG processor and
the triggerer without an Airflow connection lookup, and credentials come from the environment's
role, as for the rest of the runtime.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

TOPIC_ENV = "ETL_NOTIFY_TOPIC_ARN"


def publish_event(event: Mapping[str, Any], topic_arn: str, client: Any = None) -> str:
    """Publish ``event`` to the SNS topic; return the SNS message id.

    Message attributes ``kind``, ``entity``, ``source`` and ``schema_version`` let a subscription
    filter (for example, send ``run_succeeded`` to a different endpoint than failures).
    """
    if client is None:
        import boto3

        parts = topic_arn.split(":")
        client = boto3.client("sns", region_name=parts[3] if len(parts) > 3 and parts[3] else None)
    attributes = {
        "kind": {"DataType": "String", "StringValue": str(event["kind"])},
        "schema_version": {"DataType": "Number", "StringValue": str(event["schema_version"])},
        "source": {"DataType": "String", "StringValue": str(event["source"])},
    }
    if event.get("entity"):
        attributes["entity"] = {"DataType": "String", "StringValue": str(event["entity"])}
    subject = f"{event['kind']}: {event.get('dag_id') or ''} {event.get('task_id') or ''}".strip()
    subject = re.sub(r"[^\x20-\x7e]", "?", subject)[:100]  # SNS subjects: ASCII, at most 100 characters
    response = client.publish(
        TopicArn=topic_arn,
        Message=json.dumps(event, sort_keys=True, default=str),
        Subject=subject,
        MessageAttributes=attributes,
    )
    return str(response["MessageId"])
