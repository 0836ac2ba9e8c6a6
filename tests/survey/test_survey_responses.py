"""``lambdas/survey/responses.py``: ``read_day``/``iter_day`` (the NPS DAG's read) by query, page by page, in
answer order, without phone numbers; the module needs only boto3."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from lambdas.survey import responses
from lambdas.survey import update_survey_result as survey_result

from support.survey_lambdas import CUSTOMER, RESPONSES_TABLE, SURVEY_DIR, flow_answer, put_answer, sample

pytestmark = pytest.mark.moto


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
