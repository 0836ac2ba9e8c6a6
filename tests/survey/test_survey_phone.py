"""``lambdas/survey/phone.py`` and ``logs.py``: no full phone number reaches any log line, masking, E.164."""

from __future__ import annotations

import logging
import re

import pytest
from botocore.stub import Stubber
from lambdas.survey import process_ctr_stream
from lambdas.survey import retrieve_customer_name as name_lookup
from lambdas.survey import update_survey_result as survey_result
from lambdas.survey.phone import mask_phone, mask_phones_in_text

from support.survey_lambdas import (
    CUSTOMER,
    CUSTOMER_MASKED,
    OTHER_CUSTOMER,
    LambdaContext,
    expect_call,
    failures,
    fresh_ctr,
    kinesis_event,
    log_lines,
    sample,
    sequence_numbers,
)

pytestmark = pytest.mark.moto


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


def test_e164_takes_ascii_digits_only() -> None:
    from lambdas.survey.phone import is_e164

    assert is_e164("+441632960123")
    assert not is_e164("+4\u0664\u0661632960123")  # Arabic-Indic digits
