"""boto3 clients, created once per container (per Lambda execution environment) and reused.

* Amazon Connect: botocore's own retries are off (one attempt per call), because
  ``outbound_call.start_survey_call`` backs off explicitly on throttling, within the invocation's time.
* DynamoDB: botocore's ``standard`` retry mode (bounded, with jitter) and short timeouts, because a
  contact flow waits at most 8 seconds for its Lambda.
* SQS (the CTR dead-letter queue): ``standard`` retries and short timeouts; a send that still fails
  leaves the record to the batch's retry.

Clients follow ``AWS_ENDPOINT_URL`` like any boto3 client (the tests point them at a moto server).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

CONNECT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=10)
DYNAMODB_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=1, read_timeout=2)

SQS_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)

_clients: dict[str, Any] = {}


def connect() -> Any:
    if "connect" not in _clients:
        _clients["connect"] = boto3.client("connect", config=CONNECT_CONFIG)
    return _clients["connect"]


def dynamodb() -> Any:
    if "dynamodb" not in _clients:
        _clients["dynamodb"] = boto3.client("dynamodb", config=DYNAMODB_CONFIG)
    return _clients["dynamodb"]


def sqs() -> Any:
    if "sqs" not in _clients:
        _clients["sqs"] = boto3.client("sqs", config=SQS_CONFIG)
    return _clients["sqs"]


def reset() -> None:
    """Forget every client (a new container, as far as these modules know)."""
    _clients.clear()
