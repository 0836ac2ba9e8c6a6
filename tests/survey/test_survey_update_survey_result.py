"""``lambdas/survey/update_survey_result.py`` and ``rating.py``: a rating stored once however often Connect
invokes, a repeat answered with the stored rating, customers' names and history kept, bad ratings and
bad flow events answered with an error code, DynamoDB failures reported, the local survey date."""

from __future__ import annotations

import copy
import datetime as dt
import re
import uuid
from typing import Any

import boto3
import pytest
from lambdas.survey import update_survey_result as survey_result

from support.survey_lambdas import (
    ARABIC_DIGITS_NUMBER,
    CUSTOMER,
    CUSTOMER_MASKED,
    CUSTOMER_TABLE,
    RESPONSES_TABLE,
    LambdaContext,
    flow_answer,
    log_lines,
    put_answer,
    sample,
    scan,
)

pytestmark = pytest.mark.moto


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
