"""``survey_nps_daily`` under ``make airflow`` (``deploy/local/airflow_local.py``): real Airflow 3, four
processes, its answers in DynamoDB on the local moto server the launcher starts and seeds with the demo's
answers (``demo/survey_answers.py``).

Each demo day is triggered over the REST API and must succeed; the NPS figures it writes to the reporting
table must be those computed here, by hand, from the ratings the traffic plan holds.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from demo.survey_traffic import DEMO_DAYS, plan_traffic
from deploy.local.airflow_local import LocalAirflow, local_airflow

from support.airflow_runs import task_states, trigger, unpause, wait_for_run

pytestmark = pytest.mark.slow

DAG_ID = "survey_nps_daily"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    # No scheduled runs (the latest day has no answers): only the days triggered here run.
    with local_airflow(
        tmp_path_factory.mktemp("airflow-nps"), extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    ) as server:
        yield server


def _pct(part: int, whole: int) -> Decimal:
    return (Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_figures() -> set[tuple[Any, ...]]:
    """(day, dimension, key, answers, promoters, passives, detractors, NPS, CSAT %) from the seeded ratings."""
    rows = set()
    for day, contacts in plan_traffic().items():
        rated = [c for c in contacts if c.surveyed and c.rating is not None]
        groups = [("overall", "-", rated)]
        groups += [("queue", q, [c for c in rated if c.queue == q]) for q in {c.queue for c in rated}]
        for dimension, key, members in groups:
            n = len(members)
            promoters = sum(c.rating == 5 for c in members)
            passives = sum(c.rating == 4 for c in members)
            detractors = n - promoters - passives
            figures = (
                n,
                promoters,
                passives,
                detractors,
                _pct(promoters - detractors, n),
                _pct(promoters + passives, n),
            )
            rows.add((day.isoformat(), dimension, key, *figures))
    return rows


def written_figures(airflow: LocalAirflow) -> set[tuple[Any, ...]]:
    with sqlite3.connect(airflow.home / "survey" / "reporting.db") as conn:
        rows = conn.execute(
            "SELECT report_date, dimension, dimension_key, responses, promoters, passives, detractors, nps, csat_pct "
            "FROM survey_nps_daily WHERE dimension IN ('overall', 'queue')"
        ).fetchall()
    return {
        (str(day), dimension, key or "-", *map(int, counts), Decimal(str(nps)), Decimal(str(csat)))
        for day, dimension, key, *counts, nps, csat in rows
    }


def test_the_launcher_says_where_the_survey_tables_are(airflow: LocalAirflow) -> None:
    answers = sum(c.surveyed and c.rating is not None for cs in plan_traffic().values() for c in cs)
    (note,) = airflow.notes
    assert "SurveyResponses" in note and "local moto (local AWS emulator, no AWS account used)" in note
    assert note.endswith(f": {answers} demo answers")
    assert airflow.env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_survey_nps_daily_succeeds_and_writes_the_seeded_figures(airflow: LocalAirflow) -> None:
    unpause(airflow, DAG_ID)
    run_ids = []
    for day in DEMO_DAYS:
        run_id = f"manual__nps-{day}"
        # The day's data interval is [logical date - 1 day, logical date).
        trigger(airflow, DAG_ID, run_id, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC))
        run_ids.append(run_id)
    for run_id in run_ids:
        run = wait_for_run(airflow, DAG_ID, run_id, timeout=300)
        assert run["state"] == "success", (run_id, task_states(airflow, DAG_ID, run_id), airflow.log_tail())
    written = written_figures(airflow)
    expected = expected_figures()
    assert {r[0] for r in written} == {d.isoformat() for d in DEMO_DAYS}
    assert written == expected
