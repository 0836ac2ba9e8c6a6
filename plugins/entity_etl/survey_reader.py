"""The survey responses table: its key schema, its items, and ``iter_day`` / ``read_day`` for the
NPS DAG.

One module, two homes: the NPS DAG imports it as ``entity_etl.survey_reader``, and the survey
Lambdas, which write the table, as ``survey.responses`` (``lambdas/survey/responses.py`` is a symlink
to this file; ``deploy/cloudformation/package_lambdas.py`` puts a copy in the survey zip). So it needs
boto3 only and imports nothing else, neither from ``entity_etl`` nor from the Lambdas, and needs no
AWS Lambda Powertools.

Table (``lambdas/survey/infra/tables/survey-responses.json``), one item per answered survey:

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
from collections.abc import Iterator
from typing import Any, TypedDict

import boto3

TABLE_KEY = "ContactId"
DATE_INDEX = "SurveyDateIndex"
DATE_KEY = "SurveyDate"
TIME_KEY = "RespondedAt"
INDEX_ATTRIBUTES = ("Rating", "OriginalContactId", "Agent", "Queue")


class SurveyResponse(TypedDict):
    """One answer as ``iter_day`` yields it (plain Python types; no phone number)."""

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
        raise TypeError("iter_day and read_day take a date (or 'YYYY-MM-DD'), not a datetime")
    if isinstance(value, dt.date):
        return value.isoformat()
    return dt.date.fromisoformat(value).isoformat()  # raises ValueError for anything but YYYY-MM-DD


def _string(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if isinstance(value, dict) and "S" in value else None


def iter_day(
    table: str, day: dt.date | str, *, client: Any = None, page_size: int | None = None
) -> Iterator[SurveyResponse]:
    """Every answer with ``SurveyDate == day``, oldest first, one ``Query`` page at a time.

    A paginated ``Query`` on ``SurveyDateIndex`` (never a Scan): the next page is asked for only when
    the previous one has been consumed, so at most one page (1 MB, a few thousand answers) is held.
    ``page_size`` sets the Query's ``Limit`` (answers per page; default: DynamoDB's 1 MB pages).

    ``table`` is the table's name (or ARN). IAM: ``dynamodb:Query`` on ``<table ARN>/index/SurveyDateIndex``.
    ``day`` is checked here, when called; the table is read while the answers are consumed, so an
    error of the read (a missing table, throttling) is raised by the iteration.
    """
    survey_date = _day(day)
    if page_size is not None and (type(page_size) is not int or page_size < 1):
        raise ValueError(f"page_size must be a positive integer, not {page_size!r}")
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": DATE_INDEX,
        "KeyConditionExpression": "#date = :date",
        "ExpressionAttributeNames": {"#date": DATE_KEY},
        "ExpressionAttributeValues": {":date": {"S": survey_date}},
    }
    if page_size is not None:
        request["Limit"] = page_size
    return _pages(client or boto3.client("dynamodb"), request)


def _pages(client: Any, request: dict[str, Any]) -> Iterator[SurveyResponse]:
    while True:
        page = client.query(**request)
        for item in page.get("Items", []):
            yield SurveyResponse(
                contact_id=item[TABLE_KEY]["S"],
                survey_date=item[DATE_KEY]["S"],
                responded_at=item[TIME_KEY]["S"],
                rating=int(item["Rating"]["N"]),
                original_contact_id=_string(item, "OriginalContactId"),
                agent=_string(item, "Agent"),
                queue=_string(item, "Queue"),
            )
        if not page.get("LastEvaluatedKey"):
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read_day(
    table: str, day: dt.date | str, *, client: Any = None, page_size: int | None = None
) -> list[SurveyResponse]:
    """The whole day as a list: ``list(iter_day(...))``. Holds every answer (about 700 MB per 1M);
    to count a day, iterate :func:`iter_day` instead."""
    return list(iter_day(table, day, client=client, page_size=page_size))
