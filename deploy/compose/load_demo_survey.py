"""Put a seeded day of post-call survey answers into the ``SurveyResponses`` table on the compose
stack's AWS emulator, so ``survey_nps_daily`` has a day to count there.

docker-compose's ``airflow-init`` runs it after ``bootstrap_aws.py`` (which makes the table from
``lambdas/survey/infra/tables/survey-responses.json``). The items are those the survey Lambdas write
(``entity_etl.survey_reader.response_item``); the same seed gives the same answers, and a rerun
overwrites them (same ``ContactId``), so it changes nothing. Not for real AWS: the survey Lambdas fill
the table there.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys

import boto3

from entity_etl.survey_reader import response_item

#: The demo's survey day (UTC, the default ``SURVEY_TIMEZONE``) and how many answers it has.
DEMO_SURVEY_DAY = dt.date(2026, 11, 1)
DEMO_ANSWERS = 240
QUEUES = ["Billing", "Support", "Sales"]
AGENTS = ["agent.anna", "agent.bruno", "agent.chiara", "agent.dev"]


def demo_items(day: dt.date = DEMO_SURVEY_DAY, answers: int = DEMO_ANSWERS, seed: int = 13) -> list[dict]:
    rng = random.Random(seed)
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    items = []
    for i in range(answers):
        at = start + dt.timedelta(seconds=int(i * 86_000 / answers) + rng.randrange(300))
        items.append(
            response_item(
                contact_id=f"demo-survey-{day.isoformat()}-{i:05d}",
                phone_number=f"+4930{1000000 + i}",
                survey_date=day.isoformat(),
                responded_at=at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
                rating=rng.choice([1, 2, 3, 4, 4, 5, 5, 5]),
                original_contact_id=f"demo-call-{i:05d}",
                agent=rng.choice(AGENTS) if i % 7 else None,  # some answers without agent or queue
                queue=rng.choice(QUEUES) if i % 11 else None,
            )
        )
    return items


def load(table: str) -> int:
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("load_demo_survey: AWS_ENDPOINT_URL is not set; this script is for the local emulator only")
    dynamodb = boto3.client("dynamodb")
    items = demo_items()
    for item in items:
        dynamodb.put_item(TableName=table, Item=item)
    return len(items)


if __name__ == "__main__":
    name = os.environ.get("SURVEY_RESPONSES_TABLE", "SurveyResponses")
    print(f"load_demo_survey: {name}: {load(name)} answers for {DEMO_SURVEY_DAY}")
    sys.exit(0)
