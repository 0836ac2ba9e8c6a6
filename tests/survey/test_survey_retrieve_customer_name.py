"""``lambdas/survey/retrieve_customer_name.py``: the contact flow's customer-name lookup."""

from __future__ import annotations

import boto3
import pytest
from lambdas.survey import retrieve_customer_name as name_lookup

from support.survey_lambdas import (
    CUSTOMER,
    CUSTOMER_TABLE,
    OTHER_CUSTOMER,
    LambdaContext,
    flow_answer,
    log_lines,
    sample,
)

pytestmark = pytest.mark.moto


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
