"""The survey answers of ``make airflow``: the demo's seeded ratings, written straight into the
``SurveyResponses`` table of a local moto server (local AWS emulator, no AWS account used).

``make demo`` plays the same traffic through the real Lambda handlers (``survey_demo``); ``make airflow``
only needs the stored answers for ``survey_nps_daily``, so it writes the items the rating handler would
have stored (``entity_etl.survey_reader.response_item``), one per surveyed contact that rated.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from demo.survey_aws import FUNCTION_ENV, LABEL, REAL_AWS_VARIABLES, REGION, create_tables, moto_server
from demo.survey_demo import reporting_environment
from demo.survey_traffic import DemoContact, plan_traffic
from entity_etl.survey_reader import response_item


def answered(contact: DemoContact) -> bool:
    return contact.surveyed and contact.rating is not None and contact.rated_at is not None


def answer_item(contact: DemoContact) -> dict[str, dict[str, str]]:
    """The item ``update_survey_result`` stores for ``contact``'s rating."""
    assert contact.rating is not None and contact.rated_at is not None
    return response_item(
        contact_id=contact.survey_contact_id,
        phone_number=contact.phone,
        survey_date=contact.rated_at.date().isoformat(),  # SURVEY_TIMEZONE is UTC here
        responded_at=contact.rated_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        rating=contact.rating,
        original_contact_id=contact.contact_id,
        agent=contact.agent,
        queue=contact.queue,
    )


def seed_answers(dynamodb: Any, table: str) -> int:
    """Every demo day's answers into ``table``; returns how many."""
    items = [answer_item(c) for contacts in plan_traffic().values() for c in contacts if answered(c)]
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)
    return len(items)


def aws_environment(endpoint: str) -> dict[str, str]:
    """What points boto3 at the local moto server, with fake credentials and no ~/.aws files."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local-moto-not-a-key",
        "AWS_SECRET_ACCESS_KEY": "local-moto-not-a-secret",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


@contextlib.contextmanager
def local_survey_aws(home: Path) -> Iterator[tuple[dict[str, str], str]]:
    """A moto server holding the survey tables with the demo's answers, for the block.

    Yields the NPS DAG's environment (AWS endpoint, table names, reporting table on SQLite, files under
    ``home/objects``) and a line saying what it is.
    """
    import boto3

    survey_dir = home / "survey"
    with moto_server(survey_dir / "moto.log") as endpoint:
        aws = aws_environment(endpoint)
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
        )
        tables = create_tables(dynamodb)
        count = seed_answers(dynamodb, FUNCTION_ENV["SURVEY_RESPONSES_TABLE"])
        survey = {k: FUNCTION_ENV[k] for k in ("SURVEY_RESPONSES_TABLE", "SURVEY_TIMEZONE")}
        env = {**aws, **survey, **reporting_environment(survey_dir, home / "objects")}
        line = f"survey tables {', '.join(tables)} on local {LABEL} at {endpoint}: {count} demo answers"
        yield env, line


def without_real_aws(env: dict[str, str]) -> dict[str, str]:
    """``env`` without the profile and session variables that would point boto3 at a real account."""
    return {k: v for k, v in env.items() if k not in REAL_AWS_VARIABLES}
