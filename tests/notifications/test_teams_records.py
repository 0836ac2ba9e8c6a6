"""``lambdas/notifications/records.py``: invocation events that are not SNS events, and records that are not
SNS records, dead-lettered whole while the good records are delivered."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from support.notify_events import LAMBDA_DIR
from support.teams_webhook import (
    LambdaContext,
    Webhook,
    card_content,
    dead_letters,
    facts,
    log_lines,
    sns_event,
    task_failed_message,
)

pytestmark = pytest.mark.moto


MALFORMED_ENVELOPES = {
    "empty object": ({}, "the invocation event has no Records: not an SNS event"),
    "EventBridge event straight to the function": (
        json.loads((LAMBDA_DIR / "events" / "batch-job-failed.json").read_text()),
        "an EventBridge event delivered straight to the function, not through the SNS topic "
        "(the rules must target the topic)",
    ),
    "Records not a list": (
        {"Records": {"Sns": {"Message": "{}"}}},
        "the invocation event's Records is a dict, not a list",
    ),
    "Records null": ({"Records": None}, "the invocation event's Records is a NoneType, not a list"),
    "a list": ([{"Sns": {"Message": "{}"}}], "the invocation event is a list, not an SNS event"),
    "a string": ("hello", "the invocation event is a str, not an SNS event"),
}


@pytest.mark.parametrize(("event", "detail"), MALFORMED_ENVELOPES.values(), ids=MALFORMED_ENVELOPES.keys())
def test_an_invocation_event_that_is_not_an_sns_event_is_dead_lettered_whole(
    teams: str, webhook: Webhook, lam: ModuleType, event: Any, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lam.handler(event, LambdaContext()) == {"delivered": 0, "dead_lettered": 1}
    assert webhook.requests == []
    (letter,) = dead_letters(teams)
    assert json.loads(letter["message"]) == event  # the raw event, whole
    assert letter["reason_code"] == "malformed_event"
    assert letter["reason"] == f"malformed_event: {detail}"
    assert letter["sns_message_id"] is None and letter["message_truncated"] is False
    (error,) = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert "NOT an SNS event" in error["message"] and error["reason_code"] == "malformed_event"
    assert error["reason"] == detail and error["request_id"] == LambdaContext.aws_request_id
    assert error["event_type"] == type(event).__name__


def test_an_empty_records_list_is_nothing_to_do(
    teams: str, webhook: Webhook, lam: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lam.handler({"Records": []}, LambdaContext()) == {"delivered": 0, "dead_lettered": 0}
    assert webhook.requests == []
    assert dead_letters(teams) == []
    assert [line for line in log_lines(capsys) if line["level"] == "ERROR"] == []


def test_a_record_that_is_not_an_sns_record_is_dead_lettered_and_the_others_delivered(
    teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad record must not fail the invocation: Lambda's retry would post the good ones a second time."""
    message = task_failed_message(de_dag)
    (good,) = sns_event(message)["Records"]
    sqs_record = {"messageId": "059f36b4", "eventSource": "aws:sqs", "body": "{}"}
    event = {"Records": ["x", good, sqs_record, None]}

    assert lam.handler(event, LambdaContext()) == {"delivered": 1, "dead_lettered": 3}
    (request,) = webhook.requests  # the good record, exactly once
    assert facts(card_content(request))["Stage"] == "extract"
    letters = dead_letters(teams)
    assert {letter["reason_code"] for letter in letters} == {"malformed_event"}
    assert sorted(((json.loads(letter["message"]), letter["reason"]) for letter in letters), key=str) == sorted(
        [
            ("x", "malformed_event: record 0 is a str, not an SNS record"),
            (sqs_record, "malformed_event: record 2 has no Sns section (event source 'aws:sqs'): not an SNS record"),
            (None, "malformed_event: record 3 is a NoneType, not an SNS record"),
        ],
        key=str,
    )
    errors = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert sorted(line["record_index"] for line in errors) == [0, 2, 3]
    assert all(line["reason_code"] == "malformed_event" for line in errors)


def test_a_malformed_invocation_event_without_a_dead_letter_queue_fails_the_invocation(
    teams: str, lam: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    with pytest.raises(RuntimeError, match="could not dead-letter a malformed invocation event"):
        lam.handler({}, LambdaContext())
    with pytest.raises(RuntimeError, match=r"could not deliver or dead-letter SNS message\(s\) \(record 0\)"):
        lam.handler({"Records": ["x"]}, LambdaContext())
