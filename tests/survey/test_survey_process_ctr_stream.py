"""``lambdas/survey/process_ctr_stream.py``: CTRs through Kinesis (moto) to one survey call each, the exact
request (``Stubber``), redelivered and updated CTRs called once, no call for a survey call's own CTR or
where none is due, bad records dead-lettered to (moto) SQS while the rest of the batch is processed."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from lambdas.survey import process_ctr_stream

from support.survey_lambdas import (
    ARABIC_DIGITS_NUMBER,
    CUSTOMER,
    CUSTOMER_MASKED,
    DEAD_LETTER_QUEUE,
    OTHER_CUSTOMER,
    PHONE_NUMBERS,
    QUEUE_ID,
    LambdaContext,
    expect_call,
    failures,
    fresh_ctr,
    kinesis_event,
    log_lines,
    markers,
    sample,
    sequence_numbers,
)

pytestmark = pytest.mark.moto


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
