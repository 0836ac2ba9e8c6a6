"""The survey Lambdas' test harness: the tables from ``lambdas/survey/infra/tables/``, CTRs put on a moto
Kinesis stream and read back as the Lambda event, the ``StartOutboundVoiceContact`` request a
``Stubber`` expects, and readers of the logs (no full phone number), dead letters and markers."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from lambdas.survey import responses

ROOT = Path(__file__).resolve().parents[2]


SURVEY_DIR = ROOT / "lambdas" / "survey"


EVENTS = SURVEY_DIR / "events"


INFRA = SURVEY_DIR / "infra"


REGION = "eu-west-2"


ACCOUNT = "123456789012"


INSTANCE_ID = "aaaaaaaa-bbbb-cccc-dddd-111111111111"


FLOW_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"


SOURCE_NUMBER = "+442079460000"


QUEUE_ID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


CUSTOMER = "+441632960123"


CUSTOMER_MASKED = "+44*******123"


OTHER_CUSTOMER = "+15555550187"


# Every full number a test puts into an event: none may appear in any log line.
ARABIC_DIGITS_NUMBER = "+4\u0664\u0661632960123"  # "+4٤١632960123": Arabic-Indic digits, not E.164


PHONE_NUMBERS = (CUSTOMER, OTHER_CUSTOMER, "+447700900456", "+33639980012", "+12025550143", ARABIC_DIGITS_NUMBER)


def table_specs() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((INFRA / "tables").glob("*.json"))}


CUSTOMER_TABLE, RESPONSES_TABLE, MARKER_TABLE = "SurveyCustomerInfo", "SurveyResponses", "SurveyCallbackMarkers"


DEAD_LETTER_QUEUE = "survey-ctr-dead-letters"


@dataclass
class LambdaContext:
    remaining_ms: int = 60_000
    aws_request_id: str = "c0ffee00-1b6e-4d7a-9c1e-5a2b7d9e8f10"
    function_name: str = "survey-process-ctr-stream"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def expect_call(
    stubber: Stubber,
    ctr: dict[str, Any],
    survey_contact_id: str = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b",
    *,
    source: str | None = SOURCE_NUMBER,
    queue: str | None = None,
    error: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """Queue one StartOutboundVoiceContact answer, with the exact request it must come with."""
    attributes = {"OriginalContactID": ctr["ContactId"], "SurveyCall": "True"}
    if (ctr.get("Queue") or {}).get("Name"):
        attributes["OriginalQueue"] = ctr["Queue"]["Name"]
    if (ctr.get("Agent") or {}).get("Username"):
        attributes["OriginalAgent"] = ctr["Agent"]["Username"]
    request: dict[str, Any] = {
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "DestinationPhoneNumber": ctr["CustomerEndpoint"]["Address"],
        "ClientToken": f"survey-{ctr.get('InitialContactId') or ctr['ContactId']}",
        "Attributes": attributes,
    }
    if source:
        request["SourcePhoneNumber"] = source
    if queue:
        request["QueueId"] = queue
    if error:
        status = 429 if error == "ThrottlingException" else 400
        stubber.add_client_error(
            "start_outbound_voice_contact",
            service_error_code=error,
            service_message=message or ("Rate exceeded" if status == 429 else f"{error} from the stub"),
            http_status_code=status,
            expected_params=request,
        )
    else:
        stubber.add_response("start_outbound_voice_contact", {"ContactId": survey_contact_id}, request)
    return request


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def fresh_ctr(**changes: Any) -> dict[str, Any]:
    """The sample opted-in CTR as a new contact that ended 30 s ago."""
    ctr = sample("ctr-inbound-survey-candidate.json")
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    ctr.update(
        ContactId=str(uuid.uuid4()),
        DisconnectTimestamp=ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
        LastUpdateTimestamp=(ended + dt.timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    ctr.update(changes)
    return ctr


def kinesis_event(*payloads: dict[str, Any] | bytes) -> dict[str, Any]:
    """Put each payload (a CTR, or raw bytes) on a moto Kinesis stream and build the Lambda event
    from what GetRecords returns, as the event source mapping does."""
    kinesis = boto3.client("kinesis")
    name = f"connect-ctr-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    for payload in payloads:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        key = payload.get("ContactId", "x") if isinstance(payload, dict) else "raw"
        kinesis.put_record(StreamName=name, Data=data, PartitionKey=str(key or "x"))
    shard = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    got = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert len(got) == len(payloads)
    template = sample("kinesis-ctr-batch.json")["Records"][0]
    records = []
    for record in got:
        event_record = copy.deepcopy(template)
        event_record["kinesis"].update(
            partitionKey=record["PartitionKey"],
            sequenceNumber=record["SequenceNumber"],
            data=base64.b64encode(record["Data"]).decode(),
            approximateArrivalTimestamp=record["ApproximateArrivalTimestamp"].timestamp(),
        )
        event_record.update(eventID=f"{shard}:{record['SequenceNumber']}", eventSourceArn=arn, awsRegion=REGION)
        records.append(event_record)
    return {"Records": records}


def sequence_numbers(event: dict[str, Any]) -> list[str]:
    return [record["kinesis"]["sequenceNumber"] for record in event["Records"]]


def failures(response: dict[str, Any]) -> list[str]:
    assert set(response) == {"batchItemFailures"}
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every JSON log line written so far; fails if any holds a full phone number."""
    out = capsys.readouterr().out
    for number in PHONE_NUMBERS:
        assert number not in out and number[1:] not in out, f"a full phone number reached the logs: {number}"
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def markers() -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=MARKER_TABLE)["Items"]


def scan(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


def flow_answer(answer: dict[str, Any]) -> dict[str, str]:
    """Connect accepts a flat map of strings only."""
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in answer.items()), answer
    return answer


def put_answer(contact_id: str, day: str, at: str, rating: int, **extra: str) -> None:
    boto3.client("dynamodb").put_item(
        TableName=RESPONSES_TABLE,
        Item=responses.response_item(
            contact_id=contact_id, phone_number=CUSTOMER, survey_date=day, responded_at=at, rating=rating, **extra
        ),
    )
