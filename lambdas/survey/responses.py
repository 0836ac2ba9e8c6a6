"""The survey responses table: its key schema, its items, and ``read_day`` for the NPS DAG.

This module needs boto3 only and imports nothing else from the package, so the NPS DAG (or anything
else) can import it, or copy it, without AWS Lambda Powertools.

Table (``infra/tables/survey-responses.json``), one item per answered survey:

==================  ====  ==========================================================================
attribute           type
==================  ====  ==========================================================================
ContactId           S     partition key: the survey call's contact id (one answer per survey call)
SurveyDate          S     ``YYYY-MM-DD`` in ``SURVEY_TIMEZONE``; partition key of ``SurveyDateIndex``
RespondedAt         S     UTC ISO 8601 with milliseconds (``...Z``); sort key of ``SurveyDateIndex``
Rating              N     1-5
PhoneNumber         S     E.164; in the table only, not projected into the index
OriginalContactId   S     the agent call that was surveyed (when known)
Agent               S     that call's agent user name (when known)
Queue               S     that call's queue name (when known)
==================  ====  ==========================================================================

``SurveyDateIndex`` (GSI): partition key ``SurveyDate``, sort key ``RespondedAt``, projection INCLUDE
``Rating``, ``OriginalContactId``, ``Agent``, ``Queue``. A day is one ``Query``, in answer order, and
a reader granted only the index's ARN never sees phone numbers. A GSI is eventually consistent: read
a day once it has closed (the NPS DAG's data interval ends at midnight; a few seconds later is enough).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypedDict

import boto3

TABLE_KEY = "ContactId"
DATE_INDEX = "SurveyDateIndex"
DATE_KEY = "SurveyDate"
TIME_KEY = "RespondedAt"
INDEX_ATTRIBUTES = ("Rating", "OriginalContactId", "Agent", "Queue")


class SurveyResponse(TypedDict):
    """One answer as ``read_day`` returns it (plain Python types; no phone number)."""

    contact_id: str
    survey_date: str
    responded_at: str
    rating: int
    original_contact_id: str | None
    agent: str | None
    queue: str | None


def response_item(
    *,
    contact_id: str,
    phone_number: str,
    survey_date: str,
    responded_at: str,
    rating: int,
    original_contact_id: str | None = None,
    agent: str | None = None,
    queue: str | None = None,
) -> dict[str, dict[str, str]]:
    """The DynamoDB item (attribute-value form) of one answer."""
    item = {
        TABLE_KEY: {"S": contact_id},
        "PhoneNumber": {"S": phone_number},
        DATE_KEY: {"S": survey_date},
        TIME_KEY: {"S": responded_at},
        "Rating": {"N": str(rating)},
    }
    for name, value in (("OriginalContactId", original_contact_id), ("Agent", agent), ("Queue", queue)):
        if value:
            item[name] = {"S": value}
    return item


def _day(value: dt.date | str) -> str:
    if isinstance(value, dt.datetime):
        raise TypeError("read_day takes a date (or 'YYYY-MM-DD'), not a datetime")
    if isinstance(value, dt.date):
        return value.isoformat()
    return dt.date.fromisoformat(value).isoformat()  # raises ValueError for anything but YYYY-MM-DD


def _string(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if isinstance(value, dict) and "S" in value else None


def read_day(table: str, day: dt.date | str, *, client: Any = None) -> list[SurveyResponse]:
    """Every answer with ``SurveyDate == day``, oldest first: one paginated ``Query`` on ``SurveyDateIndex``.

    ``table`` is the table's name (or ARN). IAM: ``dynamodb:Query`` on ``<table ARN>/index/SurveyDateIndex``.
    """
    survey_date = _day(day)
    client = client or boto3.client("dynamodb")
    answers: list[SurveyResponse] = []
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": DATE_INDEX,
        "KeyConditionExpression": "#date = :date",
        "ExpressionAttributeNames": {"#date": DATE_KEY},
        "ExpressionAttributeValues": {":date": {"S": survey_date}},
    }
    while True:
        page = client.query(**request)
        for item in page.get("Items", []):
            answers.append(
                SurveyResponse(
                    contact_id=item[TABLE_KEY]["S"],
                    survey_date=item[DATE_KEY]["S"],
                    responded_at=item[TIME_KEY]["S"],
                    rating=int(item["Rating"]["N"]),
                    original_contact_id=_string(item, "OriginalContactId"),
                    agent=_string(item, "Agent"),
                    queue=_string(item, "Queue"),
                )
            )
        if not page.get("LastEvaluatedKey"):
            return answers
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
