"""Fixtures of the survey Lambda suites: the tables and the functions' environment on a fresh moto
server, and the handler's own Connect client stubbed."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from lambdas.survey import clients, process_ctr_stream

from support.servers import MotoServer
from support.survey_lambdas import (
    CUSTOMER_TABLE,
    DEAD_LETTER_QUEUE,
    FLOW_ID,
    INSTANCE_ID,
    MARKER_TABLE,
    REGION,
    RESPONSES_TABLE,
    SOURCE_NUMBER,
    table_specs,
)


@pytest.fixture
def survey(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tables from the repo's definitions on a fresh moto server; the three functions' environment."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    dynamodb = boto3.client("dynamodb")
    for name, spec in table_specs().items():
        if not name.endswith(".ttl.json"):
            dynamodb.create_table(**spec)
    for name, spec in table_specs().items():
        if name.endswith(".ttl.json"):
            dynamodb.update_time_to_live(**spec)
    queue_url = boto3.client("sqs").create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    for name, value in {
        "CTR_DLQ_URL": queue_url,
        "CONNECT_INSTANCE_ID": INSTANCE_ID,
        "SURVEY_CONTACT_FLOW_ID": FLOW_ID,
        "SURVEY_SOURCE_PHONE_NUMBER": SOURCE_NUMBER,
        "CALLBACK_MARKER_TABLE": MARKER_TABLE,
        "SURVEY_RESPONSES_TABLE": RESPONSES_TABLE,
        "SURVEY_CUSTOMER_TABLE": CUSTOMER_TABLE,
        "CONNECT_RETRY_BASE_S": "0.2",
        "CONNECT_RETRY_MAX_S": "0.4",
        "CONNECT_MAX_ATTEMPTS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("SURVEY_QUEUE_ID", "SURVEY_TIMEZONE", "SURVEY_RATING_KEY", "SURVEY_REQUIRE_AGENT"):
        monkeypatch.delenv(name, raising=False)
    process_ctr_stream.reset_caches()  # a fresh container: new clients, new idempotency store
    yield
    process_ctr_stream.reset_caches()


@pytest.fixture
def connect(survey: None) -> Iterator[Stubber]:
    """The handler's own Connect client, stubbed: every call must be one the test expects."""
    stubber = Stubber(clients.connect())
    stubber.activate()
    yield stubber
    stubber.deactivate()
