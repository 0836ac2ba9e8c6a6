"""``lambdas/survey/settings.py``: a missing or malformed setting fails the invocation naming it."""

from __future__ import annotations

import re

import pytest
from botocore.stub import Stubber
from lambdas.survey import process_ctr_stream
from lambdas.survey import retrieve_customer_name as name_lookup
from lambdas.survey import update_survey_result as survey_result
from lambdas.survey.settings import ConfigurationError

from support.survey_lambdas import LambdaContext, fresh_ctr, kinesis_event, sample

pytestmark = pytest.mark.moto


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
