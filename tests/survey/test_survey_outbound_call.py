"""``lambdas/survey/outbound_call.py``: a failed call releases its marker, a call cut off by a crash is
retried once its lease runs out, throttling backs off (bounded, jittered), permanent errors are not
retried, and Connect's own validation accepts every request the handler sends."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from lambdas.survey import clients, outbound_call, process_ctr_stream
from lambdas.survey.settings import CallbackSettings

from support.survey_lambdas import (
    ACCOUNT,
    CUSTOMER,
    CUSTOMER_MASKED,
    DEAD_LETTER_QUEUE,
    FLOW_ID,
    INSTANCE_ID,
    MARKER_TABLE,
    QUEUE_ID,
    REGION,
    SOURCE_NUMBER,
    LambdaContext,
    expect_call,
    failures,
    fresh_ctr,
    kinesis_event,
    log_lines,
    markers,
    sequence_numbers,
)

pytestmark = pytest.mark.moto


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
