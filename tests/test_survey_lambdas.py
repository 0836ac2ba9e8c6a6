"""The Amazon Connect survey Lambdas (``lambdas/survey/``) against real parts.

* DynamoDB is a moto server (``AWS_ENDPOINT_URL``); every table is created from the repo's own
  definitions in ``lambdas/survey/infra/tables/``.
* CTRs travel through a Kinesis stream on the same server: the Lambda event is built from what
  ``GetRecords`` returns, in the shape of ``events/kinesis-ctr-batch.json``. Only damage that Kinesis
  itself cannot carry (data that is not base64) is written into the event by hand.
* Amazon Connect's ``StartOutboundVoiceContact``, which moto lacks, goes through botocore's
  ``Stubber``, which checks every request against the exact parameters expected.
* Contact-flow events are the documented samples in ``events/``, or built from them.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import logging
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from lambdas.survey import clients, item_size, outbound_call, process_ctr_stream, responses, survey_data
from lambdas.survey import retrieve_customer_name as name_lookup
from lambdas.survey import update_survey_result as survey_result
from lambdas.survey.phone import mask_phone, mask_phones_in_text
from lambdas.survey.settings import CallbackSettings, ConfigurationError, CustomerLookupSettings, ResultSettings

from support.servers import MotoServer

pytestmark = pytest.mark.moto

ROOT = Path(__file__).resolve().parents[1]
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


TABLES = {spec["TableName"] for spec in table_specs().values() if "KeySchema" in spec}
CUSTOMER_TABLE, RESPONSES_TABLE, MARKER_TABLE = "SurveyCustomerInfo", "SurveyResponses", "SurveyCallbackMarkers"
DEAD_LETTER_QUEUE = "survey-ctr-dead-letters"


@dataclass
class LambdaContext:
    remaining_ms: int = 60_000
    aws_request_id: str = "c0ffee00-1b6e-4d7a-9c1e-5a2b7d9e8f10"
    function_name: str = "survey-process-ctr-stream"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


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


# -- events in the documented shapes ----------------------------------------------------------------
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


def dead_letters() -> list[dict[str, Any]]:
    """Every message on the CTR dead-letter queue (moto SQS), bodies decoded, with the ``reason`` attribute."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    found = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
    ).get("Messages"):
        for message in messages:
            body = message["Body"]
            for number in PHONE_NUMBERS:
                assert number not in body and number[1:] not in body, "a full phone number in a dead letter"
            found.append({**json.loads(body), "_reason": message["MessageAttributes"]["reason"]["StringValue"]})
    return found


def markers() -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=MARKER_TABLE)["Items"]


def scan(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]


# -- process_ctr_stream: the call ------------------------------------------------------------------
def test_an_opted_in_call_places_one_survey_call_with_the_exact_request(
    connect: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    ctr = fresh_ctr()
    expect_call(connect, ctr, "survey-contact-1")  # the Stubber checks every parameter
    event = kinesis_event(ctr)

    before = time.time()
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []
    connect.assert_no_pending_responses()

    (marker,) = markers()
    assert marker["id"]["S"].startswith("survey-callback#")
    assert marker["status"]["S"] == "COMPLETED"
    assert json.loads(marker["data"]["S"])["survey_contact_id"] == "survey-contact-1"
    assert before + 7 * 24 * 3600 - 5 <= int(marker["expiration"]["N"]) <= time.time() + 7 * 24 * 3600 + 5
    assert CUSTOMER not in json.dumps(marker)  # the marker table holds no phone numbers

    lines = log_lines(capsys)
    (started,) = [line for line in lines if line["message"].startswith("survey call started")]
    assert started["contact_id"] == ctr["ContactId"]
    assert started["sequence_number"] == sequence_numbers(event)[0]
    assert started["phone"] == CUSTOMER_MASKED
    assert started["survey_contact_id"] == "survey-contact-1" and started["attempts"] == 1
    assert started["level"] == "INFO" and started["service"] == "connect-survey"
    (summary,) = [line for line in lines if line["message"].startswith("processed 1 CTR")]
    assert summary["outcomes"] == {"called": 1} and summary["failed"] == 0


def test_the_outbound_queue_can_replace_the_source_number(connect: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SURVEY_SOURCE_PHONE_NUMBER")
    monkeypatch.setenv("SURVEY_QUEUE_ID", QUEUE_ID)
    ctr = fresh_ctr()
    expect_call(connect, ctr, source=None, queue=QUEUE_ID)
    assert failures(process_ctr_stream.handler(kinesis_event(ctr), LambdaContext())) == []
    connect.assert_no_pending_responses()


@pytest.mark.parametrize("opt_in", ["True", "true", "TRUE", " True "])
def test_the_opt_in_is_case_insensitive(connect: Stubber, opt_in: str) -> None:
    ctr = fresh_ctr(Attributes={"SurveyCandidate": opt_in})
    expect_call(connect, ctr)
    assert failures(process_ctr_stream.handler(kinesis_event(ctr), LambdaContext())) == []
    connect.assert_no_pending_responses()


def test_a_transferred_contact_is_called_once_for_the_whole_chain(
    connect: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    """INBOUND leg (transferred on: NextContactId) then the TRANSFER leg: one call, keyed on the chain."""
    first = fresh_ctr()
    second = fresh_ctr(
        InitiationMethod="TRANSFER",
        InitialContactId=first["ContactId"],
        PreviousContactId=first["ContactId"],
        Queue={"ARN": "arn:aws:connect:...:queue/billing", "Name": "Billing"},
    )
    first["NextContactId"] = second["ContactId"]
    expect_call(connect, second)  # ClientToken survey-<first contact id>, OriginalContactID = the last leg
    event = kinesis_event(first, second)
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []
    connect.assert_no_pending_responses()
    reasons = {line.get("contact_id"): line.get("reason") for line in log_lines(capsys) if "reason" in line}
    assert reasons[first["ContactId"]] == "continued_in_next_contact"


# -- duplicates -------------------------------------------------------------------------------------
def test_the_same_ctr_delivered_twice_calls_once(connect: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    ctr = fresh_ctr()
    expect_call(connect, ctr, "survey-contact-1")  # exactly one answer: a second call would be unstubbed
    event = kinesis_event(ctr)

    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []  # Kinesis redelivers the batch
    connect.assert_no_pending_responses()
    assert len(markers()) == 1

    duplicate = [line for line in log_lines(capsys) if line.get("reason") == "duplicate"]
    assert len(duplicate) == 1 and duplicate[0]["survey_contact_id"] == "survey-contact-1"
    assert duplicate[0]["contact_id"] == ctr["ContactId"]


def test_a_duplicate_in_one_batch_and_an_updated_ctr_call_once(connect: Stubber) -> None:
    """Connect streams a new version of a CTR when a contact is updated; both copies arrive."""
    ctr = fresh_ctr()
    updated = {**ctr, "LastUpdateTimestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    updated["Attributes"] = {**ctr["Attributes"], "Notes": "follow-up"}
    expect_call(connect, ctr)
    assert failures(process_ctr_stream.handler(kinesis_event(ctr, ctr, updated), LambdaContext())) == []
    connect.assert_no_pending_responses()


# -- no loops and no calls where none is due --------------------------------------------------------
def test_a_survey_calls_own_ctr_is_ignored(connect: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    own = sample("ctr-survey-call.json")  # the documented shape of our outbound survey call's CTR
    own["Attributes"]["SurveyCandidate"] = "True"  # even if the survey flow copied the opt-in
    own["DisconnectTimestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = kinesis_event(own)
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []  # nothing stubbed: no call
    connect.assert_no_pending_responses()
    assert markers() == []
    (line,) = [line for line in log_lines(capsys) if line.get("contact_id") == own["ContactId"]]
    assert line["reason"] == "initiation_method_api"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"InitiationMethod": "OUTBOUND"}, "initiation_method_outbound"),
        ({"InitiationMethod": "API"}, "initiation_method_api"),
        ({"InitiationMethod": "CALLBACK"}, "initiation_method_callback"),
        (
            {"InitiationMethod": "TRANSFER", "Attributes": {"SurveyCandidate": "True", "SurveyCall": "True"}},
            "survey_call",
        ),
        ({"Channel": "CHAT"}, "channel_chat"),
        ({"Attributes": {}}, "not_opted_in"),
        ({"Attributes": {"SurveyCandidate": "False"}}, "not_opted_in"),
        ({"Attributes": {"SurveyCandidate": "yes please"}}, "not_opted_in"),
        ({"NextContactId": "1d2c3b4a-0000-4000-8000-000000000000"}, "continued_in_next_contact"),
        ({"Agent": None}, "never_reached_an_agent"),
        ({"DisconnectTimestamp": "2020-01-05T09:00:00Z"}, "too_late"),
    ],
)
def test_no_call_is_placed_where_none_is_due(
    connect: Stubber, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], reason: str
) -> None:
    ctr = fresh_ctr(**changes)
    assert failures(process_ctr_stream.handler(kinesis_event(ctr), LambdaContext())) == []
    connect.assert_no_pending_responses()
    assert markers() == []
    (line,) = [line for line in log_lines(capsys) if line.get("contact_id") == ctr["ContactId"]]
    assert line["reason"] == reason and line["level"] == "INFO"


def test_an_agentless_call_can_be_surveyed_when_configured(connect: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEY_REQUIRE_AGENT", "false")
    ctr = fresh_ctr(Agent=None)
    expect_call(connect, ctr)
    assert failures(process_ctr_stream.handler(kinesis_event(ctr), LambdaContext())) == []
    connect.assert_no_pending_responses()


# -- bad records: logged, dead-lettered, and the rest of the batch still processed --------------------
def _garble(event: dict[str, Any], index: int) -> None:
    event["Records"][index]["kinesis"]["data"] = "bm90IGJhc2U2NA==!!not*base64"


@pytest.mark.parametrize(
    ("bad", "reason", "names_contact"),
    [
        ("not base64", "not_base64", False),
        (b"Connect CTR \xff\xfe not JSON", "not_json", False),
        (b'["a", "list"]', "not_a_ctr", False),
        ({"Channel": "VOICE", "InitiationMethod": "INBOUND", "Attributes": {}}, "missing_contact_id", False),
        ("no attributes", "missing_attributes", True),
        ("no channel", "missing_field", True),
        ("no phone", "missing_phone_number", True),
        ("anonymous", "invalid_phone_number", True),
        ("arabic digits", "invalid_phone_number", True),
    ],
)
def test_a_bad_record_is_dead_lettered_and_named_and_the_others_are_processed(
    connect: Stubber, capsys: pytest.CaptureFixture[str], bad: Any, reason: str, names_contact: bool
) -> None:
    before, after = fresh_ctr(), fresh_ctr(CustomerEndpoint={"Address": OTHER_CUSTOMER, "Type": "TELEPHONE_NUMBER"})
    broken: Any = bad
    if bad == "no attributes":
        broken = fresh_ctr()
        del broken["Attributes"]
    elif bad == "no channel":
        broken = fresh_ctr()
        del broken["Channel"]
    elif bad == "no phone":
        broken = fresh_ctr(CustomerEndpoint=None)
    elif bad == "anonymous":
        broken = fresh_ctr(CustomerEndpoint={"Address": "anonymous", "Type": "TELEPHONE_NUMBER"})
    elif bad == "arabic digits":
        broken = fresh_ctr(CustomerEndpoint={"Address": ARABIC_DIGITS_NUMBER, "Type": "TELEPHONE_NUMBER"})
    elif bad == "not base64":
        broken = fresh_ctr()  # garbled in the event below: Kinesis itself always carries bytes
    expect_call(connect, before, "survey-1")
    expect_call(connect, after, "survey-2")
    event = kinesis_event(before, broken, after)
    if bad == "not base64":
        _garble(event, 1)
    bad_sequence = sequence_numbers(event)[1]

    response = process_ctr_stream.handler(event, LambdaContext())

    assert failures(response) == []  # a record that can never succeed does not hold the shard back
    connect.assert_no_pending_responses()  # both good customers called, in order; none for the bad one
    lines = log_lines(capsys)
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["sequence_number"] == bad_sequence and bad_sequence in error["message"]
    assert error["reason"] == reason
    if names_contact:
        assert error["contact_id"] == broken["ContactId"] and broken["ContactId"] in error["message"]
    (letter,) = dead_letters()
    record = event["Records"][1]
    assert letter["sequence_number"] == bad_sequence and letter["reason"] == letter["_reason"] == reason
    assert letter["shard_id"] == record["eventID"].split(":")[0] == "shardId-000000000000"
    assert letter["partition_key"] == record["kinesis"]["partitionKey"]
    assert letter["event_source_arn"] == record["eventSourceArn"]
    assert letter["detail"] == error["message"].split(": ", 1)[1]
    assert letter["contact_id"] == (broken["ContactId"] if names_contact else None)
    assert "data" not in letter  # the CTR (the customer's full number) stays in the stream
    (summary,) = [line for line in lines if line["message"].startswith("processed 3 CTR")]
    assert summary["outcomes"] == {"called": 2, "dead_lettered": 1} and summary["failed"] == 0


def test_a_batch_of_only_bad_records_dead_letters_each_one(connect: Stubber) -> None:
    event = kinesis_event(b"not json", b"{}", b"42")
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []
    letters = sorted(dead_letters(), key=lambda letter: int(letter["sequence_number"]))
    assert [(letter["sequence_number"], letter["reason"]) for letter in letters] == list(
        zip(sequence_numbers(event), ["not_json", "missing_contact_id", "not_a_ctr"], strict=True)
    )


def test_a_bad_record_the_dead_letter_queue_refuses_is_retried_not_lost(
    connect: Stubber, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = fresh_ctr()
    expect_call(connect, good, "survey-1")
    event = kinesis_event(b"not json", good)
    real_url = boto3.client("sqs").get_queue_url(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    monkeypatch.setenv("CTR_DLQ_URL", real_url.rsplit("/", 1)[0] + "/no-such-queue")

    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)[:1]
    connect.assert_no_pending_responses()  # the good record is still processed
    errors = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert [line["reason"] for line in errors] == ["not_json", "not_json"]
    assert "could NOT be sent to the dead-letter queue" in errors[1]["message"]
    assert errors[1]["error_code"] in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")

    monkeypatch.setenv("CTR_DLQ_URL", real_url)  # the retry: the queue takes it
    retry = {"Records": event["Records"][:1]}
    assert failures(process_ctr_stream.handler(retry, LambdaContext())) == []
    assert [letter["reason"] for letter in dead_letters()] == ["not_json"]


def test_transient_and_permanent_failures_in_one_batch(connect: Stubber) -> None:
    """Throttling beyond the retries is a batch item failure (retried); a bad number is dead-lettered."""
    throttled, bad = (
        fresh_ctr(),
        fresh_ctr(CustomerEndpoint={"Address": ARABIC_DIGITS_NUMBER, "Type": "TELEPHONE_NUMBER"}),
    )
    for _ in range(3):  # CONNECT_MAX_ATTEMPTS
        expect_call(connect, throttled, error="ThrottlingException")
    event = kinesis_event(throttled, bad)

    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)[:1]
    connect.assert_no_pending_responses()  # no call to the Arabic-Indic number, ever
    assert [(letter["sequence_number"], letter["reason"]) for letter in dead_letters()] == [
        (sequence_numbers(event)[1], "invalid_phone_number")
    ]
    assert markers() == []  # the throttled call's marker was released for the retry


def test_an_empty_batch_is_a_no_op(connect: Stubber) -> None:
    assert process_ctr_stream.handler({"Records": []}, LambdaContext()) == {"batchItemFailures": []}


# -- failures of the call itself --------------------------------------------------------------------
def test_a_failed_call_releases_the_marker_and_the_retry_calls(
    connect: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    """The marker is written before the call; when the call fails the record must be retried and the
    customer called, not skipped as a duplicate."""
    ctr = fresh_ctr()
    expect_call(connect, ctr, error="LimitExceededException")  # not retried in the invocation
    event = kinesis_event(ctr)

    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)
    assert markers() == []  # released
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert error["error_code"] == "LimitExceededException" and error["contact_id"] == ctr["ContactId"]
    assert "will be retried" in error["message"]

    expect_call(connect, ctr, "survey-contact-1")
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []  # Lambda's retry
    connect.assert_no_pending_responses()
    assert [m["status"]["S"] for m in markers()] == ["COMPLETED"]


class Killed(BaseException):
    """What the Lambda runtime does to a function at its timeout: no except clause runs."""


def test_a_call_cut_off_by_a_crash_is_retried_once_its_lease_runs_out(
    connect: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctr = fresh_ctr()
    event = kinesis_event(ctr)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    before_ms = int(time.time() * 1000)
    with monkeypatch.context() as patch:
        patch.setattr(process_ctr_stream, "start_survey_call", killed)
        with pytest.raises(Killed):
            process_ctr_stream.handler(event, LambdaContext(remaining_ms=30_000))
    (marker,) = markers()
    assert marker["status"]["S"] == "INPROGRESS"  # the crashed invocation's lease: its remaining time
    assert before_ms + 30_000 <= int(marker["in_progress_expiration"]["N"]) <= time.time() * 1000 + 30_000

    # Redelivered while the lease holds: reported failed, nobody called.
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)
    # The lease runs out (its end moved into the past, rather than waiting on the clock of a loaded machine).
    boto3.client("dynamodb").update_item(
        TableName=MARKER_TABLE,
        Key={"id": marker["id"]},
        UpdateExpression="SET in_progress_expiration = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time() * 1000) - 1)}},
    )
    # After the lease: the retry calls the customer, once.
    expect_call(connect, ctr, "survey-contact-1")
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == []
    connect.assert_no_pending_responses()
    assert [m["status"]["S"] for m in markers()] == ["COMPLETED"]


def test_a_call_placed_whose_marker_cannot_be_completed_is_not_retried(
    connect: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    """The customer was called; the COMPLETED write failed. Failing the record would call again."""
    from botocore.awsrequest import AWSResponse

    def fail_update(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "InternalServerError", "Message": "the marker update failed"}
        return AWSResponse("", 500, {}, None), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 500}}

    ctr = fresh_ctr()
    expect_call(connect, ctr)
    event = kinesis_event(ctr)
    process_ctr_stream.handler({"Records": []}, LambdaContext())  # the container's clients exist
    clients.dynamodb().meta.events.register("before-call.dynamodb.UpdateItem", fail_update)

    assert failures(process_ctr_stream.handler(event, LambdaContext(remaining_ms=60_000))) == []
    connect.assert_no_pending_responses()  # called once
    assert [m["status"]["S"] for m in markers()] == ["INPROGRESS"]  # until the invocation's deadline
    (warning,) = [line for line in log_lines(capsys) if line["level"] == "WARNING"]
    assert warning["error_code"] == "InternalServerError" and warning["contact_id"] == ctr["ContactId"]
    # A redelivery meanwhile finds the live lease: reported, not called.
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)
    connect.assert_no_pending_responses()


def test_throttling_backs_off_then_calls_once(connect: Stubber, capsys: pytest.CaptureFixture[str]) -> None:
    ctr = fresh_ctr()
    expect_call(connect, ctr, error="ThrottlingException")
    expect_call(connect, ctr, "survey-contact-1")
    started = time.monotonic()
    assert failures(process_ctr_stream.handler(kinesis_event(ctr), LambdaContext())) == []
    elapsed = time.monotonic() - started
    connect.assert_no_pending_responses()  # two requests, one call placed

    lines = log_lines(capsys)
    (retry,) = [line for line in lines if line["level"] == "WARNING"]
    assert retry["error_code"] == "ThrottlingException" and retry["attempt"] == 1
    assert 0.1 <= retry["delay_s"] <= 0.2  # half of CONNECT_RETRY_BASE_S, plus up to half again
    assert elapsed >= retry["delay_s"]
    assert retry["phone"] == CUSTOMER_MASKED
    (started_line,) = [line for line in lines if line["message"].startswith("survey call started")]
    assert started_line["attempts"] == 2


def test_throttling_that_persists_fails_the_record_after_bounded_attempts(
    connect: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    ctr = fresh_ctr()
    for _ in range(3):  # CONNECT_MAX_ATTEMPTS
        expect_call(connect, ctr, error="ThrottlingException")
    event = kinesis_event(ctr)
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)
    connect.assert_no_pending_responses()
    lines = log_lines(capsys)
    delays = [line["delay_s"] for line in lines if line["level"] == "WARNING"]
    assert len(delays) == 2 and 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4  # doubling, capped
    assert markers() == []  # released: the retry will call


def test_no_back_off_past_the_invocations_deadline(connect: Stubber) -> None:
    ctr = fresh_ctr()
    expect_call(connect, ctr, error="ThrottlingException")  # one attempt only: no time for a second
    event = kinesis_event(ctr)
    assert failures(process_ctr_stream.handler(event, LambdaContext(remaining_ms=5_000))) == sequence_numbers(event)
    connect.assert_no_pending_responses()


def test_backoff_is_bounded_and_jittered() -> None:
    settings = CallbackSettings.from_env(
        {
            "CONNECT_INSTANCE_ID": INSTANCE_ID,
            "SURVEY_CONTACT_FLOW_ID": FLOW_ID,
            "SURVEY_SOURCE_PHONE_NUMBER": SOURCE_NUMBER,
            "CALLBACK_MARKER_TABLE": MARKER_TABLE,
            "CTR_DLQ_URL": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{DEAD_LETTER_QUEUE}",
        }
    )
    assert [outbound_call.backoff_s(n, settings, rand=lambda: 0.0) for n in range(1, 7)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
    ]
    assert outbound_call.backoff_s(5, settings, rand=lambda: 0.999) == pytest.approx(4 + 0.999 * 4)


# -- configuration ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variable", ["CONNECT_INSTANCE_ID", "SURVEY_CONTACT_FLOW_ID", "CALLBACK_MARKER_TABLE", "CTR_DLQ_URL"]
)
def test_a_missing_variable_fails_the_invocation_naming_it(
    connect: Stubber, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv(variable)
    with pytest.raises(ConfigurationError, match=f"environment variable {variable} is not set"):
        process_ctr_stream.handler(kinesis_event(fresh_ctr()), LambdaContext())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SURVEY_SOURCE_PHONE_NUMBER": ""}, "neither SURVEY_SOURCE_PHONE_NUMBER nor SURVEY_QUEUE_ID is set"),
        ({"SURVEY_SOURCE_PHONE_NUMBER": "020 7946 0000"}, "SURVEY_SOURCE_PHONE_NUMBER is not an E.164 number"),
        ({"CONNECT_MAX_ATTEMPTS": "many"}, "CONNECT_MAX_ATTEMPTS='many' is not a number"),
        ({"SURVEY_MAX_CALLBACK_DELAY_S": "999999999"}, "less than CALLBACK_MARKER_TTL_S"),
        ({"SURVEY_REQUIRE_AGENT": "maybe"}, "SURVEY_REQUIRE_AGENT='maybe' must be true or false"),
        ({"CTR_DLQ_URL": "survey-ctr-dead-letters"}, "CTR_DLQ_URL='survey-ctr-dead-letters' is not an SQS queue URL"),
    ],
)
def test_malformed_settings_are_explained(
    survey: None, monkeypatch: pytest.MonkeyPatch, changes: dict[str, str], message: str
) -> None:
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        process_ctr_stream.handler({"Records": []}, LambdaContext())


@pytest.mark.parametrize("variable", ["SURVEY_RESPONSES_TABLE", "SURVEY_CUSTOMER_TABLE"])
def test_the_flow_handlers_name_a_missing_variable(
    survey: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv(variable)
    with pytest.raises(ConfigurationError, match=f"environment variable {variable} is not set"):
        survey_result.handler(sample("contact-flow-update-survey-result.json"))
    if variable == "SURVEY_CUSTOMER_TABLE":
        with pytest.raises(ConfigurationError, match=f"environment variable {variable} is not set"):
            name_lookup.handler(sample("contact-flow-retrieve-customer-name.json"))


def test_an_unknown_time_zone_is_explained(survey: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEY_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(ConfigurationError, match="SURVEY_TIMEZONE='Mars/Olympus_Mons' is not a known IANA time zone"):
        survey_result.handler(sample("contact-flow-update-survey-result.json"))


# -- phone numbers never reach a log ----------------------------------------------------------------
def test_no_full_phone_number_reaches_any_log_line(
    connect: Stubber, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every path that logs (call, throttle, failure, duplicate, bad number, skipped, flow answers)."""
    called = fresh_ctr()
    throttled = fresh_ctr(CustomerEndpoint={"Address": "+447700900456", "Type": "TELEPHONE_NUMBER"})
    failing = fresh_ctr(CustomerEndpoint={"Address": "+33639980012", "Type": "TELEPHONE_NUMBER"})
    skipped = fresh_ctr(Attributes={}, CustomerEndpoint={"Address": OTHER_CUSTOMER, "Type": "TELEPHONE_NUMBER"})
    not_e164 = fresh_ctr(CustomerEndpoint={"Address": "12025550143", "Type": "TELEPHONE_NUMBER"})
    expect_call(connect, called)
    expect_call(connect, throttled, error="ThrottlingException")
    expect_call(connect, throttled)
    expect_call(connect, failing, error="DestinationNotAllowedException")
    event = kinesis_event(called, throttled, failing, skipped, not_e164)
    process_ctr_stream.handler(event, LambdaContext())
    process_ctr_stream.handler(event, LambdaContext(remaining_ms=1_000))  # duplicates, and the retries
    flow = sample("contact-flow-update-survey-result.json")
    survey_result.handler(flow)
    survey_result.handler(flow)
    flow["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = "9"
    survey_result.handler(flow)
    name_lookup.handler(sample("contact-flow-retrieve-customer-name.json"))
    monkeypatch.setenv("SURVEY_RESPONSES_TABLE", "NoSuchTable")
    survey_result.handler(sample("contact-flow-update-survey-result.json"))  # logs a traceback

    lines = log_lines(capsys)  # asserts that no number in PHONE_NUMBERS appears, with or without "+"
    assert len(lines) >= 15
    phones = {line["phone"] for line in lines if "phone" in line}
    assert {CUSTOMER_MASKED, "+44*******456", "+33******012"} <= phones
    assert all(re.fullmatch(r"\+?\d{0,2}\**\d{0,3}", phone) for phone in phones)


def test_an_aws_error_quoting_the_number_reaches_no_log_in_full(
    connect: Stubber, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Not ours, nor Powertools' own loggers at DEBUG (they record a failed record's exception)."""
    caplog.set_level(logging.DEBUG)
    ctr = fresh_ctr()
    expect_call(connect, ctr, error="DestinationNotAllowedException", message=f"Calls to {CUSTOMER} are not allowed")
    event = kinesis_event(ctr)
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)
    assert "Record processing exception" in caplog.text  # Powertools did log the failure
    assert CUSTOMER not in caplog.text and CUSTOMER[1:] not in caplog.text
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert error["error_code"] == "DestinationNotAllowedException"


def test_masking() -> None:
    assert mask_phone(CUSTOMER) == CUSTOMER_MASKED
    assert mask_phone("+15555550187") == "+15******187"
    assert mask_phone("12025550143") == "12******143"
    assert mask_phone("+4412") == "+****"  # too short to show any digit
    assert mask_phone("anonymous") == "*********"
    assert mask_phone(None) == mask_phone("") == ""
    text = (
        "error for +441632960123 at sequence 49656953312312473960283418730158219087435362713217302530 in 123456789012"
    )
    assert mask_phones_in_text(text) == (
        "error for +44*******123 at sequence 49656953312312473960283418730158219087435362713217302530 in 123456789012"
    )


def test_the_log_formatter_masks_numbers_left_in_any_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The second guard: a number inside an exception or a field is masked in the finished line."""
    from lambdas.survey.logs import logger

    try:
        raise ValueError(f"Connect said: {CUSTOMER} is not allowed")
    except ValueError:
        logger.exception("unexpected", extra={"detail": f"call {OTHER_CUSTOMER}"})
    (line,) = log_lines(capsys)  # no full number anywhere in the line
    assert CUSTOMER_MASKED in line["exception"] and line["detail"] == "call +15******187"


# -- update_survey_result ---------------------------------------------------------------------------
def flow_answer(answer: dict[str, Any]) -> dict[str, str]:
    """Connect accepts a flat map of strings only."""
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in answer.items()), answer
    return answer


def customer_item(phone: str = CUSTOMER) -> dict[str, Any]:
    item: dict[str, Any] = boto3.resource("dynamodb").Table(CUSTOMER_TABLE).get_item(Key={"PhoneNumber": phone})["Item"]
    return item


def test_a_rating_is_stored_once_however_often_connect_invokes(
    survey: None, capsys: pytest.CaptureFixture[str]
) -> None:
    event = sample("contact-flow-update-survey-result.json")
    today = dt.datetime.now(dt.UTC).date().isoformat()

    answers = [flow_answer(survey_result.handler(copy.deepcopy(event), LambdaContext())) for _ in range(3)]

    assert answers[0] == {"result": "OK", "rating": "4", "survey_date": today, "duplicate": "false"}
    assert answers[1] == answers[2] == {"result": "OK", "rating": "4", "survey_date": today, "duplicate": "true"}
    (item,) = scan(RESPONSES_TABLE)
    assert item["ContactId"] == {"S": "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"}
    assert item["PhoneNumber"] == {"S": CUSTOMER}
    assert item["SurveyDate"] == {"S": today}
    assert item["Rating"] == {"N": "4"}
    assert item["OriginalContactId"] == {"S": "7c9b8d3e-5f21-4a6b-8e0d-3c4f5a6b7c8d"}
    assert (item["Agent"], item["Queue"]) == ({"S": "jdoe"}, {"S": "BasicQueue"})
    responded = dt.datetime.fromisoformat(item["RespondedAt"]["S"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - responded).total_seconds()) < 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["RespondedAt"]["S"])

    info = customer_item()
    assert info["SurveyData"] == [  # the original shape, one entry
        {"ContactID": "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", "Date": today, "NPS_Rating": 4}
    ]
    assert info["ContactIDs"] == {"e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"}

    lines = log_lines(capsys)
    assert [line["message"].split(" for contact")[0] for line in lines] == [
        "survey result stored",
        "survey result",
        "survey result",
    ]
    assert sum(line.get("reason") == "duplicate" for line in lines) == 2
    assert all(line["phone"] == CUSTOMER_MASKED for line in lines)


def test_a_repeated_invocation_answers_with_the_stored_rating_not_the_new_one(
    survey: None, capsys: pytest.CaptureFixture[str]
) -> None:
    first = sample("contact-flow-update-survey-result.json")  # rating 4
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert flow_answer(survey_result.handler(copy.deepcopy(first)))["duplicate"] == "false"
    again = copy.deepcopy(first)
    again["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = "1"  # the caller keyed again

    answer = flow_answer(survey_result.handler(again))

    assert answer == {"result": "OK", "rating": "4", "survey_date": today, "duplicate": "true"}
    (item,) = scan(RESPONSES_TABLE)
    assert item["Rating"] == {"N": "4"}
    assert [entry["NPS_Rating"] for entry in customer_item()["SurveyData"]] == [4]
    repeat = log_lines(capsys)[-1]
    assert (repeat["reason"], repeat["rating"], repeat["ignored_rating"]) == ("duplicate", 4, 1)


def test_the_answer_to_a_repeat_is_the_stored_item(survey: None) -> None:
    """The stored rating and date come from the table, not from this invocation."""
    contact = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
    put_answer(contact, "2026-11-20", "2026-11-20T09:00:00.000Z", 2)
    answer = flow_answer(survey_result.handler(sample("contact-flow-update-survey-result.json")))  # rating 4
    assert answer == {"result": "OK", "rating": "2", "survey_date": "2026-11-20", "duplicate": "true"}
    (item,) = scan(RESPONSES_TABLE)
    assert (item["Rating"], item["SurveyDate"]) == ({"N": "2"}, {"S": "2026-11-20"})


def test_an_existing_customer_keeps_name_and_history(survey: None) -> None:
    """An item written by the original code: a name, and SurveyData without the ContactIDs set."""
    table = boto3.resource("dynamodb").Table(CUSTOMER_TABLE)
    old_entry = {"ContactID": "0a0a0a0a-1111-4222-8333-444444444444", "Date": "2026-10-02", "NPS_Rating": 5}
    table.put_item(Item={"PhoneNumber": CUSTOMER, "CustomerName": "Jane Doe", "SurveyData": [old_entry]})

    for _ in range(2):
        assert flow_answer(survey_result.handler(sample("contact-flow-update-survey-result.json")))["result"] == "OK"
    second = sample("contact-flow-update-survey-result.json")
    second["Details"]["ContactData"]["ContactId"] = "f9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a"
    second["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = "2"
    assert flow_answer(survey_result.handler(second))["duplicate"] == "false"

    info = customer_item()
    assert info["CustomerName"] == "Jane Doe"
    assert [(e["ContactID"], e["NPS_Rating"]) for e in info["SurveyData"]] == [
        ("0a0a0a0a-1111-4222-8333-444444444444", 5),
        ("e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", 4),
        ("f9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a", 2),
    ]
    assert info["ContactIDs"] == {"e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b", "f9e8d7c6-b5a4-4392-8170-6f5e4d3c2b1a"}
    assert len(scan(RESPONSES_TABLE)) == 2


def test_a_contact_already_in_survey_data_still_gets_its_response_item(survey: None) -> None:
    """The list names the contact (a write by another writer) but no response item exists yet."""
    contact = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
    boto3.resource("dynamodb").Table(CUSTOMER_TABLE).put_item(
        Item={
            "PhoneNumber": CUSTOMER,
            "SurveyData": [{"ContactID": contact, "Date": "2026-11-24", "NPS_Rating": 4}],
            "ContactIDs": {contact},
        }
    )
    assert flow_answer(survey_result.handler(sample("contact-flow-update-survey-result.json")))["duplicate"] == "false"
    assert len(scan(RESPONSES_TABLE)) == 1
    assert len(customer_item()["SurveyData"]) == 1


# -- SurveyData stays well below DynamoDB's 400 KB item limit ------------------------------------------
def legacy_entries(count: int, comment: str = "") -> list[dict[str, Any]]:
    """``SurveyData`` as the original (unbounded) code left it after ``count`` surveys, oldest first."""
    entries = []
    for i in range(count):
        entry: dict[str, Any] = {"ContactID": {"S": f"{i:08d}-0000-4000-8000-000000000000"}}
        entry.update(Date={"S": "2026-01-01"}, NPS_Rating={"N": str(1 + i % 5)})
        if comment:
            entry["Comment"] = {"S": comment}
        entries.append({"M": entry})
    return entries


def moto_size(value: Any) -> int:
    """What moto counts for an item (its own rule; it refuses items over 405,000 bytes)."""
    kind, inner = next(iter(value.items())) if isinstance(value, dict) and len(value) == 1 else ("item", value)
    if kind == "item":
        return sum(len(name.encode()) + moto_size(v) for name, v in inner.items())
    if kind == "L":
        return sum(moto_size(v) for v in inner)
    if kind == "M":
        return sum(len(k.encode()) + moto_size(v) for k, v in inner.items())
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    return len(str(inner).encode())


def rating_event(contact_id: str, rating: int, phone: str = CUSTOMER) -> dict[str, Any]:
    event = sample("contact-flow-update-survey-result.json")
    event["Details"]["ContactData"]["ContactId"] = contact_id
    event["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = phone
    event["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = str(rating)
    return event


def raw_customer_item(phone: str = CUSTOMER) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=CUSTOMER_TABLE, Key={"PhoneNumber": {"S": phone}}, ConsistentRead=True
    )["Item"]
    return item


def test_survey_data_is_bounded_where_an_unbounded_list_would_pass_the_item_limit(survey: None) -> None:
    """A number the original code had appended surveys for until its item was just under 400 KB,
    then 10 more answers through the handler: unbounded, the item would pass the limit and the
    number could store nothing more. Every answer is stored, and the list is bounded.

    The sizes are DynamoDB's (``item_size``: its documented rules, exact for these entries). moto
    enforces a limit too, on a smaller count of its own (checked below on a copy of the item), and
    counts an attribute's old value with its new one while replacing it; so its refusal cannot stand
    in for DynamoDB's at exactly 400 KB."""
    client = boto3.client("dynamodb")
    # moto takes seconds for an item this size (DynamoDB milliseconds): the handler's own client, with
    # a read timeout moto can meet.
    clients._clients["dynamodb"] = boto3.client(
        "dynamodb", config=clients.DYNAMODB_CONFIG.merge(Config(read_timeout=120))
    )
    base = {"PhoneNumber": {"S": CUSTOMER}, "CustomerName": {"S": "Jane Doe"}, "SurveyData": {"L": []}}
    entry_bytes = 1 + item_size.value_size(legacy_entries(1)[0])
    count = (item_size.ITEM_LIMIT_BYTES - item_size.item_size(base)) // entry_bytes - 3
    history = legacy_entries(count)
    seeded = {**base, "SurveyData": {"L": history}}
    client.put_item(TableName=CUSTOMER_TABLE, Item=seeded)
    new = [(str(uuid.uuid4()), 1 + i % 5) for i in range(10)]

    for contact_id, rating in new:
        answer = flow_answer(survey_result.handler(rating_event(contact_id, rating)))
        assert (answer["result"], answer["rating"], answer["duplicate"]) == ("OK", str(rating), "false")

    new_entries = [
        {"M": {"ContactID": {"S": c}, "Date": {"S": answer["survey_date"]}, "NPS_Rating": {"N": str(r)}}}
        for c, r in new
    ]
    unbounded = {**seeded, "SurveyData": {"L": history + new_entries}}
    assert item_size.item_size(seeded) <= item_size.ITEM_LIMIT_BYTES < item_size.item_size(unbounded)
    assert {item["ContactId"]["S"] for item in scan(RESPONSES_TABLE)} == {c for c, _ in new}  # every answer
    item = raw_customer_item()
    kept = item["SurveyData"]["L"]
    assert len(kept) == survey_data.MAX_ENTRIES
    assert kept[-10:] == new_entries  # the newest, in answer order
    assert kept[:-10] == history[-(survey_data.MAX_ENTRIES - 10) :]  # then the most recent of the old ones
    assert set(item["ContactIDs"]["SS"]) == {c for c, _ in new}
    assert item["CustomerName"] == {"S": "Jane Doe"} and item["SurveyDataVersion"] == {"N": "10"}
    assert moto_size(item) <= item_size.item_size(item) <= survey_data.ITEM_BUDGET_BYTES < 400 * 1024

    # moto does enforce an item limit (405,000 bytes of its count): the original append, carried on, is refused.
    client.put_item(TableName=CUSTOMER_TABLE, Item={**seeded, "PhoneNumber": {"S": OTHER_CUSTOMER}})
    more = legacy_entries((405_000 - moto_size(seeded)) // moto_size(legacy_entries(1)[0]) + 2)
    with pytest.raises(client.exceptions.ClientError, match="exceeded the maximum allowed size"):
        client.update_item(
            TableName=CUSTOMER_TABLE,
            Key={"PhoneNumber": {"S": OTHER_CUSTOMER}},
            UpdateExpression="SET SurveyData = list_append(if_not_exists(SurveyData, :empty), :entries)",
            ExpressionAttributeValues={":empty": {"L": []}, ":entries": {"L": more}},
        )


def test_survey_data_is_bounded_by_bytes_as_well(survey: None) -> None:
    """Entries of another writer that are large: fewer than MAX_ENTRIES fit the byte budget."""
    client = boto3.client("dynamodb")
    history = legacy_entries(400, comment="x" * 500)  # ~235 KB: more than the byte budget
    client.put_item(TableName=CUSTOMER_TABLE, Item={"PhoneNumber": {"S": CUSTOMER}, "SurveyData": {"L": history}})
    contact = str(uuid.uuid4())
    assert flow_answer(survey_result.handler(rating_event(contact, 5)))["duplicate"] == "false"

    item = raw_customer_item()
    kept = item["SurveyData"]["L"]
    history_bytes = item_size.item_size({"SurveyData": item["SurveyData"], "ContactIDs": item["ContactIDs"]})
    assert survey_data.HISTORY_MAX_BYTES - 600 < history_bytes <= survey_data.HISTORY_MAX_BYTES
    assert 200 < len(kept) < 300 and kept[:-1] == history[-(len(kept) - 1) :]
    assert survey_data.entry_contact_id(kept[-1]) == contact


def test_a_concurrent_append_by_the_original_code_is_not_lost(survey: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between this function's read and its write, the original code appends an entry: the condition
    fails, the item is read again, and both entries are kept."""
    client = boto3.client("dynamodb")
    client.put_item(
        TableName=CUSTOMER_TABLE, Item={"PhoneNumber": {"S": CUSTOMER}, "SurveyData": {"L": legacy_entries(2)}}
    )
    other = {"M": {"ContactID": {"S": "concurrent"}, "Date": {"S": "2026-11-24"}, "NPS_Rating": {"N": "3"}}}
    real_read, reads = survey_data.read, []

    def read_then_race(table: str, phone: str) -> survey_data.History:
        history = real_read(table, phone)
        reads.append(len(history.entries))
        if len(reads) == 1:
            client.update_item(
                TableName=CUSTOMER_TABLE,
                Key={"PhoneNumber": {"S": CUSTOMER}},
                UpdateExpression="SET SurveyData = list_append(SurveyData, :entry)",
                ExpressionAttributeValues={":entry": {"L": [other]}},
            )
        return history

    monkeypatch.setattr(survey_data, "read", read_then_race)
    contact = str(uuid.uuid4())
    assert flow_answer(survey_result.handler(rating_event(contact, 4)))["duplicate"] == "false"

    assert reads == [2, 3]  # refused once, then read again
    ids = [survey_data.entry_contact_id(e) for e in raw_customer_item()["SurveyData"]["L"]]
    assert ids[-2:] == ["concurrent", contact] and len(ids) == 4
    assert len(scan(RESPONSES_TABLE)) == 1


@pytest.mark.parametrize(
    ("rating", "code"),
    [
        ("0", "INVALID_RATING"),
        ("6", "INVALID_RATING"),
        ("7", "INVALID_RATING"),
        ("abc", "INVALID_RATING"),
        ("4.5", "INVALID_RATING"),
        ("04", "INVALID_RATING"),
        ("-3", "INVALID_RATING"),
        ("", "MISSING_RATING"),
        ("   ", "MISSING_RATING"),
        (None, "MISSING_RATING"),
    ],
)
def test_a_bad_rating_gets_an_error_code_and_stores_nothing(
    survey: None, capsys: pytest.CaptureFixture[str], rating: str | None, code: str
) -> None:
    event = sample("contact-flow-update-survey-result.json")
    if rating is None:
        del event["Details"]["ContactData"]["Attributes"]["SurveyResponse"]
    else:
        event["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = rating

    answer = flow_answer(survey_result.handler(event, LambdaContext()))

    assert answer["result"] == "ERROR" and answer["error_code"] == code
    assert set(answer) == {"result", "error_code", "message"}
    if code == "INVALID_RATING":
        assert answer["message"] == f"rating {rating!r} is not a whole number from 1 to 5"
    assert scan(RESPONSES_TABLE) == [] and scan(CUSTOMER_TABLE) == []
    (error,) = log_lines(capsys)
    assert error["level"] == "ERROR" and error["error_code"] == code
    assert error["contact_id"] == "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
    assert "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b" in error["message"]


def test_the_rating_comes_from_parameters_else_from_attributes(survey: None, monkeypatch: pytest.MonkeyPatch) -> None:
    event = sample("contact-flow-update-survey-result.json")
    assert event["Details"]["Parameters"] == {}  # the walkthrough's flow: the digit in $.Attributes.SurveyResponse
    event["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = " 5 "
    event["Details"]["ContactData"]["Attributes"]["NPS_Rating"] = "1"  # the old default key is not read
    assert flow_answer(survey_result.handler(event))["rating"] == "5"

    event = sample("contact-flow-update-survey-result.json")
    event["Details"]["ContactData"]["ContactId"] = str(uuid.uuid4())
    event["Details"]["Parameters"] = {"SurveyResponse": "3"}  # a Lambda parameter of that name wins
    assert flow_answer(survey_result.handler(event))["rating"] == "3"

    monkeypatch.setenv("SURVEY_RATING_KEY", "Score")
    event = sample("contact-flow-update-survey-result.json")
    event["Details"]["ContactData"]["ContactId"] = str(uuid.uuid4())
    event["Details"]["Parameters"] = {"Score": "2"}
    event["Details"]["ContactData"]["Attributes"]["Score"] = "5"  # the parameter wins
    assert flow_answer(survey_result.handler(event))["rating"] == "2"
    assert sorted(int(item["Rating"]["N"]) for item in scan(RESPONSES_TABLE)) == [2, 3, 5]


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        ("no endpoint", "MISSING_PHONE_NUMBER"),
        ("anonymous", "INVALID_PHONE_NUMBER"),
        ("arabic digits", "INVALID_PHONE_NUMBER"),
        ("no contact id", "INVALID_EVENT"),
        ("not a flow event", "INVALID_EVENT"),
    ],
)
def test_a_bad_flow_event_gets_an_error_code(
    survey: None, capsys: pytest.CaptureFixture[str], damage: str, code: str
) -> None:
    event: dict[str, Any] = sample("contact-flow-update-survey-result.json")
    data = event["Details"]["ContactData"]
    if damage == "no endpoint":
        data["CustomerEndpoint"] = None
    elif damage == "anonymous":
        data["CustomerEndpoint"] = {"Address": "anonymous", "Type": "TELEPHONE_NUMBER"}
    elif damage == "arabic digits":
        data["CustomerEndpoint"] = {"Address": ARABIC_DIGITS_NUMBER, "Type": "TELEPHONE_NUMBER"}
    elif damage == "no contact id":
        del data["ContactId"]
    else:
        event = {"Records": []}
    answer = flow_answer(survey_result.handler(event))
    assert (answer["result"], answer["error_code"]) == ("ERROR", code)
    assert scan(RESPONSES_TABLE) == [] and scan(CUSTOMER_TABLE) == []
    (error,) = log_lines(capsys)
    assert error["error_code"] == code


def test_a_dynamodb_failure_is_reported_to_the_flow_not_hidden(
    survey: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SURVEY_RESPONSES_TABLE", "NoSuchTable")
    answer = flow_answer(survey_result.handler(sample("contact-flow-update-survey-result.json")))
    assert answer["result"] == "ERROR" and answer["error_code"] == "STORE_FAILED"
    assert "invoking again is safe" in answer["message"]
    assert scan(CUSTOMER_TABLE) == []  # the transaction wrote nothing
    (error,) = log_lines(capsys)
    assert error["level"] == "ERROR" and error["error_code"] in (
        "ResourceNotFoundException",
        "TransactionCanceledException",
    )
    assert "Traceback" in error["exception"]


def test_the_survey_date_is_the_local_date(survey: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEY_TIMEZONE", "Pacific/Kiritimati")  # UTC+14: usually a different date
    from zoneinfo import ZoneInfo

    before = dt.datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    answer = flow_answer(survey_result.handler(sample("contact-flow-update-survey-result.json")))
    after = dt.datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert answer["survey_date"] in (before, after)
    assert scan(RESPONSES_TABLE)[0]["SurveyDate"]["S"] == answer["survey_date"]


# -- read_day (the NPS DAG's read) -------------------------------------------------------------------
def put_answer(contact_id: str, day: str, at: str, rating: int, **extra: str) -> None:
    boto3.client("dynamodb").put_item(
        TableName=RESPONSES_TABLE,
        Item=responses.response_item(
            contact_id=contact_id, phone_number=CUSTOMER, survey_date=day, responded_at=at, rating=rating, **extra
        ),
    )


class PagingClient:
    """A DynamoDB client whose queries return two items per page, to exercise pagination."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb")
        self.calls = 0

    def query(self, **request: Any) -> Any:
        self.calls += 1
        return self.client.query(Limit=2, **request)


def test_read_day_reads_one_day_by_query_in_answer_order(survey: None) -> None:
    put_answer("c-3", "2026-11-24", "2026-11-24T18:00:00.000Z", 2)
    put_answer("c-1", "2026-11-24", "2026-11-24T08:00:00.000Z", 5, agent="jdoe", queue="BasicQueue")
    put_answer("c-2", "2026-11-24", "2026-11-24T09:30:00.000Z", 3, original_contact_id="o-2")
    put_answer("c-4", "2026-11-24", "2026-11-24T23:59:59.999Z", 1)
    put_answer("c-0", "2026-11-23", "2026-11-23T23:59:59.999Z", 4)
    put_answer("c-5", "2026-11-25", "2026-11-25T00:00:00.000Z", 4)
    client = PagingClient()

    day = responses.read_day(RESPONSES_TABLE, dt.date(2026, 11, 24), client=client)

    assert client.calls >= 2  # four answers, two per page
    assert [answer["contact_id"] for answer in day] == ["c-1", "c-2", "c-3", "c-4"]
    assert day[0] == {
        "contact_id": "c-1",
        "survey_date": "2026-11-24",
        "responded_at": "2026-11-24T08:00:00.000Z",
        "rating": 5,
        "original_contact_id": None,
        "agent": "jdoe",
        "queue": "BasicQueue",
    }
    assert day[1]["original_contact_id"] == "o-2" and day[1]["agent"] is None
    assert [answer["rating"] for answer in responses.read_day(RESPONSES_TABLE, "2026-11-23")] == [4]
    assert responses.read_day(RESPONSES_TABLE, "2026-11-26") == []


def recorded_requests(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every request ``client`` sends, as (operation, parameters), recorded by botocore's own event."""
    requests: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        requests.append((model.name, copy.deepcopy(params)))

    client.meta.events.register("before-parameter-build.dynamodb", record)
    return requests


def test_iter_day_yields_read_days_answers_page_by_page(survey: None) -> None:
    """Eleven answers, three per Query page: the same answers as read_day, each page asked for only
    when the previous one has been consumed, and only Queries on the date index (never a Scan)."""
    for i in range(11):
        put_answer(f"c-{i:02d}", "2026-11-24", f"2026-11-24T{8 + i:02d}:00:00.000Z", i % 5 + 1, queue=f"q{i % 3}")
    put_answer("c-prev", "2026-11-23", "2026-11-23T23:59:59.999Z", 4)
    put_answer("c-next", "2026-11-25", "2026-11-25T00:00:00.000Z", 4)
    client = boto3.client("dynamodb")
    requests = recorded_requests(client)

    answers = responses.iter_day(RESPONSES_TABLE, dt.date(2026, 11, 24), client=client, page_size=3)
    assert requests == []  # nothing is read before the first answer is asked for
    first = next(answers)
    assert len(requests) == 1
    following = [next(answers) for _ in range(3)]  # the rest of page 1, then the first of page 2
    assert len(requests) == 2
    streamed = [first, *following, *answers]

    whole = responses.read_day(RESPONSES_TABLE, dt.date(2026, 11, 24), client=boto3.client("dynamodb"))
    assert streamed == whole
    assert [a["contact_id"] for a in streamed] == [f"c-{i:02d}" for i in range(11)]
    assert [a["rating"] for a in streamed] == [i % 5 + 1 for i in range(11)]
    assert len(requests) >= 4  # 11 answers, 3 per page: 4 pages (and maybe an empty last one)
    assert {op for op, _ in requests} == {"Query"}
    assert all(r["IndexName"] == responses.DATE_INDEX and r["Limit"] == 3 for _, r in requests)
    assert [r.get("ExclusiveStartKey") is None for _, r in requests][:2] == [True, False]
    assert list(responses.iter_day(RESPONSES_TABLE, "2026-11-26", page_size=1)) == []


@pytest.mark.parametrize("page_size", [0, -1, 2.5, True])
def test_iter_day_refuses_a_page_size_that_is_not_a_positive_integer(page_size: Any) -> None:
    with pytest.raises(ValueError, match="page_size"):
        responses.iter_day(RESPONSES_TABLE, "2026-11-24", client=object(), page_size=page_size)


def test_read_day_sees_what_the_lambda_wrote(survey: None) -> None:
    assert flow_answer(survey_result.handler(sample("contact-flow-update-survey-result.json")))["result"] == "OK"
    (answer,) = responses.read_day(RESPONSES_TABLE, dt.datetime.now(dt.UTC).date())
    assert answer["contact_id"] == "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b" and answer["rating"] == 4
    assert CUSTOMER not in json.dumps(answer)


def test_the_index_never_returns_phone_numbers(survey: None) -> None:
    put_answer("c-1", "2026-11-24", "2026-11-24T08:00:00.000Z", 5)
    (item,) = boto3.client("dynamodb").query(
        TableName=RESPONSES_TABLE,
        IndexName=responses.DATE_INDEX,
        KeyConditionExpression="SurveyDate = :d",
        ExpressionAttributeValues={":d": {"S": "2026-11-24"}},
    )["Items"]
    assert "PhoneNumber" not in item and item["Rating"] == {"N": "5"}


@pytest.mark.parametrize("day", ["24/11/2026", "2026-11-24T00:00:00", dt.datetime(2026, 11, 24, tzinfo=dt.UTC)])
def test_read_day_takes_a_date_only(day: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        responses.read_day(RESPONSES_TABLE, day, client=object())
    with pytest.raises((ValueError, TypeError)):  # when called, before any answer is asked for
        responses.iter_day(RESPONSES_TABLE, day, client=object())


# -- retrieve_customer_name -------------------------------------------------------------------------
def test_the_customer_name_lookup(survey: None, capsys: pytest.CaptureFixture[str]) -> None:
    table = boto3.resource("dynamodb").Table(CUSTOMER_TABLE)
    table.put_item(Item={"PhoneNumber": CUSTOMER, "CustomerName": "Jane Doe", "SurveyData": []})
    table.put_item(Item={"PhoneNumber": OTHER_CUSTOMER, "SurveyData": []})
    event = sample("contact-flow-retrieve-customer-name.json")

    assert flow_answer(name_lookup.handler(event, LambdaContext())) == {"result": "OK", "CustomerName": "Jane Doe"}
    event["Details"]["Parameters"]["PhoneNumber"] = OTHER_CUSTOMER  # a number passed by the flow wins
    assert flow_answer(name_lookup.handler(event)) == {"result": "NOT_FOUND", "CustomerName": ""}
    event["Details"]["Parameters"]["PhoneNumber"] = "+12025550143"
    assert flow_answer(name_lookup.handler(event)) == {"result": "NOT_FOUND", "CustomerName": ""}
    event["Details"]["Parameters"] = {}
    event["Details"]["ContactData"]["CustomerEndpoint"] = None
    answer = flow_answer(name_lookup.handler(event))
    assert (answer["result"], answer["error_code"], answer["CustomerName"]) == ("ERROR", "MISSING_PHONE_NUMBER", "")
    lines = log_lines(capsys)
    assert [line.get("found") for line in lines[:3]] == [True, False, False]


def test_a_customer_table_failure_is_reported(survey: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SURVEY_CUSTOMER_TABLE", "NoSuchTable")
    answer = flow_answer(name_lookup.handler(sample("contact-flow-retrieve-customer-name.json")))
    assert (answer["result"], answer["error_code"], answer["CustomerName"]) == ("ERROR", "LOOKUP_FAILED", "")


# -- infrastructure definitions -----------------------------------------------------------------------
PLACEHOLDERS = {
    "${AWS::Region}": REGION,
    "${AWS::AccountId}": ACCOUNT,
    "${ConnectInstanceId}": INSTANCE_ID,
    "${CtrStreamName}": "connect-ctr",
    "${CtrStreamKmsKeyId}": "1234abcd-12ab-34cd-56ef-1234567890ab",
    "${SurveyContactFlowId}": FLOW_ID,
    "${SurveySourcePhoneNumber}": SOURCE_NUMBER,
    "${PowertoolsLayerVersion}": "18",
}


def filled(path: Path) -> Any:
    text = path.read_text()
    for placeholder in set(re.findall(r"\$\{[^}]+\}", text)):
        assert placeholder in PLACEHOLDERS, f"{path.name}: undocumented placeholder {placeholder}"
        text = text.replace(placeholder, PLACEHOLDERS[placeholder])
    return json.loads(text)


def test_the_tables_match_what_the_code_reads_and_writes(survey: None) -> None:
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=RESPONSES_TABLE)["Table"]
    assert table["KeySchema"] == [{"AttributeName": responses.TABLE_KEY, "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == responses.DATE_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": responses.DATE_KEY, "KeyType": "HASH"},
        {"AttributeName": responses.TIME_KEY, "KeyType": "RANGE"},
    ]
    assert tuple(index["Projection"]["NonKeyAttributes"]) == responses.INDEX_ATTRIBUTES
    customer = dynamodb.describe_table(TableName=CUSTOMER_TABLE)["Table"]
    assert customer["KeySchema"] == [{"AttributeName": "PhoneNumber", "KeyType": "HASH"}]
    ttl = dynamodb.describe_time_to_live(TableName=MARKER_TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}  # Powertools' expiry attribute
    assert {CUSTOMER_TABLE, RESPONSES_TABLE, MARKER_TABLE} == TABLES


POLICIES = sorted((INFRA / "iam").glob("*.policy.json"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policies_are_least_privilege_and_valid(aws: MotoServer, path: Path) -> None:
    document = filled(path)
    for statement in document["Statement"]:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        for action in actions:
            assert "*" not in action, f"{path.name}: wildcard action {action}"
        for resource in resources:
            assert resource != "*" and resource.startswith("arn:aws:"), f"{path.name}: {resource}"
            assert f":{ACCOUNT}:" in resource and f":{REGION}:" in resource
            if resource.startswith("arn:aws:dynamodb:"):
                assert resource.split(":table/")[1].split("/")[0] in TABLES
        if any(action.startswith("logs:") for action in actions):
            assert set(actions) == {"logs:CreateLogStream", "logs:PutLogEvents"}
            assert all(r.endswith(":*") and ":log-group:/aws/lambda/survey-" in r for r in resources)
    # moto's IAM checks the document's grammar as AWS does.
    boto3.client("iam").create_policy(PolicyName=path.name.split(".")[0], PolicyDocument=json.dumps(document))


def test_each_function_is_granted_exactly_what_its_code_calls() -> None:
    def actions(name: str) -> set[str]:
        document = filled(INFRA / "iam" / f"{name}.policy.json")
        found: set[str] = set()
        for statement in document["Statement"]:
            found.update([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        return found

    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    kinesis = {"kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords"}
    kinesis |= {"kinesis:GetShardIterator", "kinesis:ListShards"}
    markers = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}  # Powertools
    assert actions("process-ctr-stream") == logs | kinesis | markers | {
        "kms:Decrypt",
        "connect:StartOutboundVoiceContact",
        "sqs:SendMessage",  # the event source mapping's on-failure destination
    }
    # The transaction, the customer item's read (SurveyData is bounded) and the stored answer's (a repeat).
    assert actions("update-survey-result") == logs | {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"}
    assert actions("retrieve-customer-name") == logs | {"dynamodb:GetItem"}
    assert actions("nps-dag-reader") == {"dynamodb:Query"}
    reader = filled(INFRA / "iam" / "nps-dag-reader.policy.json")["Statement"][0]["Resource"]
    assert reader.endswith(f":table/{RESPONSES_TABLE}/index/{responses.DATE_INDEX}")


def test_the_event_source_mapping_is_a_valid_request_with_the_safety_settings() -> None:
    mapping = filled(INFRA / "event-source-mapping.json")
    lambda_client = boto3.client("lambda", region_name=REGION)
    validate_parameters(
        mapping, lambda_client.meta.service_model.operation_model("CreateEventSourceMapping").input_shape
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 10
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"].startswith("arn:aws:sqs:")
    functions = {entry["Function"]["FunctionName"]: entry for entry in filled(INFRA / "functions.json")}
    ctr_env = functions[mapping["FunctionName"]]["Function"]["Environment"]["Variables"]
    # Records older than the call-back window are not worth retrying; the markers outlive them.
    assert mapping["MaximumRecordAgeInSeconds"] == int(ctr_env["SURVEY_MAX_CALLBACK_DELAY_S"])
    assert mapping["MaximumRecordAgeInSeconds"] < int(ctr_env["CALLBACK_MARKER_TTL_S"])


def test_the_function_definitions_configure_real_handlers() -> None:
    lambda_client = boto3.client("lambda", region_name=REGION)
    shape = lambda_client.meta.service_model.operation_model("CreateFunction").input_shape
    settings: dict[str, type[CallbackSettings] | type[ResultSettings] | type[CustomerLookupSettings]] = {
        "process_ctr_stream": CallbackSettings,
        "update_survey_result": ResultSettings,
        "retrieve_customer_name": CustomerLookupSettings,
    }
    entries = filled(INFRA / "functions.json")
    assert len(entries) == 3
    for entry in entries:
        function = entry["Function"]
        request = {
            **function,
            "Role": f"arn:aws:iam::{ACCOUNT}:role/{function['FunctionName']}",
            "Code": {"ZipFile": b"x"},
        }
        validate_parameters(request, shape)
        package, module, attribute = function["Handler"].split(".")
        assert package == "survey" and attribute == "handler"
        assert (INFRA / entry["Policy"]).exists()
        assert function["FunctionName"] in json.dumps(filled(INFRA / entry["Policy"]))  # its own log group
        settings[module].from_env(function["Environment"]["Variables"])  # the environment is complete and valid


def test_the_sample_kinesis_event_carries_the_sample_ctrs() -> None:
    event = sample("kinesis-ctr-batch.json")
    decoded = [json.loads(base64.b64decode(r["kinesis"]["data"], validate=True)) for r in event["Records"]]
    assert decoded == [sample("ctr-inbound-survey-candidate.json"), sample("ctr-survey-call.json")]
    for record, ctr in zip(event["Records"], decoded, strict=True):
        assert record["kinesis"]["partitionKey"] == ctr["ContactId"]
        assert record["eventID"].endswith(record["kinesis"]["sequenceNumber"])


def test_the_sample_kinesis_event_as_delivered(connect: Stubber) -> None:
    """The documented batch as is: its CTRs are from 2026-11-24, long past the call-back window."""
    response = process_ctr_stream.handler(sample("kinesis-ctr-batch.json"), LambdaContext())
    assert failures(response) == []
    connect.assert_no_pending_responses()  # the first is too late, the second is our own survey call


def test_the_handlers_need_only_boto3_and_powertools(tmp_path: Path) -> None:
    """Loaded as the Lambda runtime loads them (package ``survey`` at the zip's root): no Airflow, no
    entity_etl, and no third-party import beyond boto3 and AWS Lambda Powertools."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'entity_etl', 'pydantic', 'lambdas'):\n"
        "            raise ImportError(name + ' is not in the Lambda package')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    script = (
        "import sys, json\n"
        "import survey.process_ctr_stream, survey.update_survey_result, survey.retrieve_customer_name\n"
        "import survey.responses\n"
        "top = {m.split('.')[0] for m in sys.modules if not m.startswith('_')}\n"
        "third_party = sorted(top - set(sys.stdlib_module_names) - {'survey', 'sitecustomize'})\n"
        "print(json.dumps(third_party))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": f"{tmp_path}:{SURVEY_DIR.parent}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    allowed = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "aws_lambda_powertools"}
    allowed |= {"typing_extensions", "certifi", "charset_normalizer", "idna"}
    imported = set(json.loads(proc.stdout))
    assert imported <= allowed, imported - allowed
    assert {"boto3", "aws_lambda_powertools"} <= imported


def test_the_responses_module_needs_only_boto3(tmp_path: Path) -> None:
    """What the NPS DAG imports: no Powertools, no other module of the package."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, importlib.util as u\n"
            f"spec = u.spec_from_file_location('responses', {str(SURVEY_DIR / 'responses.py')!r})\n"
            "m = u.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(m.read_day.__name__, m.iter_day.__name__, 'aws_lambda_powertools' in sys.modules)\n",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["read_day", "iter_day", "False"]


def test_connect_rejects_nothing_the_handler_sends() -> None:
    """The request the handler builds satisfies Connect's own model (the Stubber checks it too)."""
    settings = CallbackSettings.from_env(
        {
            "CONNECT_INSTANCE_ID": INSTANCE_ID,
            "SURVEY_CONTACT_FLOW_ID": FLOW_ID,
            "SURVEY_SOURCE_PHONE_NUMBER": SOURCE_NUMBER,
            "SURVEY_QUEUE_ID": QUEUE_ID,
            "CALLBACK_MARKER_TABLE": MARKER_TABLE,
            "CTR_DLQ_URL": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{DEAD_LETTER_QUEUE}",
        }
    )
    from lambdas.survey.ctr import SurveyCallback

    callback = SurveyCallback("chain-" + "x" * 600, "contact-1", CUSTOMER, {"OriginalContactID": "contact-1"})
    request = outbound_call.build_request(callback, settings)
    connect_client = boto3.client("connect", region_name=REGION)
    validate_parameters(
        request, connect_client.meta.service_model.operation_model("StartOutboundVoiceContact").input_shape
    )
    assert len(request["ClientToken"]) == 500
    assert "RelatedContactId" not in request  # it would copy SurveyCandidate onto the survey call


def test_a_client_error_from_connect_is_not_retried_when_permanent(connect: Stubber) -> None:
    ctr = fresh_ctr()
    expect_call(connect, ctr, error="DestinationNotAllowedException")
    event = kinesis_event(ctr)
    assert failures(process_ctr_stream.handler(event, LambdaContext())) == sequence_numbers(event)
    connect.assert_no_pending_responses()  # one attempt only
    assert markers() == []


def test_e164_takes_ascii_digits_only() -> None:
    from lambdas.survey.phone import is_e164

    assert is_e164("+441632960123")
    assert not is_e164("+4\u0664\u0661632960123")  # Arabic-Indic digits
