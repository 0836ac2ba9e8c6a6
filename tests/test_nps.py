"""The daily NPS DAG ``survey_nps_daily`` and its Airflow-free modules (``entity_etl.nps``).

* arithmetic against hand-computed days: all promoters, all detractors, no answers, mixed, rounding,
  custom scales; the per-queue and per-agent breakdown; bounded memory;
* the reporting table on the real MariaDB server: a day replaced in one transaction, other days
  untouched, a rerun identical;
* the DAG through real Airflow (``dag.test``) with the answers in DynamoDB on the moto server, the
  reporting table on MariaDB, object storage in a temporary folder and the summary on SNS: twice,
  with identical results;
* DAG integrity: no import errors, the dag_id, the timetable, nothing read from a network or DB at
  parse time.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from lambdas.survey.responses import response_item

from entity_etl.nps import job
from entity_etl.nps.aggregate import AGENT, OVERALL, QUEUE, Counts, InvalidResponseError, aggregate_day, percent
from entity_etl.nps.report_table import (
    COLUMNS,
    ReportTableError,
    ensure_table,
    read_day_rows,
    read_trend,
    replace_day,
)
from entity_etl.nps.settings import DEFAULT_SCALE, NpsSettingError, NpsSettings, RatingScale
from entity_etl.runtime.connections import parse_connection
from entity_etl.runtime.databases import Database, open_database
from support.servers import MariaDB, MotoServer
from support.teams_lambda import load_teams_handler

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
RESPONSES_SPEC = ROOT / "lambdas" / "survey" / "infra" / "tables" / "survey-responses.json"
DAY = dt.date(2026, 11, 10)


def answer(rating: int, *, queue: str | None = None, agent: str | None = None, n: int = 0) -> dict[str, Any]:
    return {"contact_id": f"c-{n}", "survey_date": DAY.isoformat(), "rating": rating, "queue": queue, "agent": agent}


def day_of(*ratings: int) -> list[dict[str, Any]]:
    return [answer(r, n=i) for i, r in enumerate(ratings)]


# -- arithmetic ----------------------------------------------------------------------------------
def test_all_promoters_is_100() -> None:
    figures = aggregate_day(day_of(5, 5, 5, 5), day=DAY)
    assert figures.overall == Counts(responses=4, promoters=4, passives=0, detractors=0, satisfied=4)
    assert figures.overall.nps == Decimal("100.00") and figures.overall.csat_pct == Decimal("100.00")


def test_all_detractors_is_minus_100() -> None:
    figures = aggregate_day(day_of(1, 2, 3, 3, 1), day=DAY)
    assert figures.overall == Counts(responses=5, promoters=0, passives=0, detractors=5, satisfied=0)
    assert figures.overall.nps == Decimal("-100.00") and figures.overall.csat_pct == Decimal("0.00")


def test_a_day_without_answers_has_count_0_and_no_nps() -> None:
    figures = aggregate_day([], day=DAY)
    assert figures.overall == Counts()
    assert figures.overall.nps is None and figures.overall.csat_pct is None
    assert [(r.dimension, r.key, r.counts.responses) for r in figures.rows()] == [(OVERALL, "", 0)]
    assert figures.rows()[0].as_dict()["nps"] is None


def test_a_mixed_day_by_hand() -> None:
    # 5 5 5 4 3 1: promoters 3, passives 1, detractors 2 -> (3 - 2) / 6 = 16.666...%; CSAT 4/6 = 66.666...%
    figures = aggregate_day(day_of(5, 5, 5, 4, 3, 1), day=DAY)
    assert figures.overall == Counts(responses=6, promoters=3, passives=1, detractors=2, satisfied=4)
    assert (figures.overall.nps, figures.overall.csat_pct) == (Decimal("16.67"), Decimal("66.67"))
    # 1 1 5: (1 - 2) / 3 = -33.333...%
    assert aggregate_day(day_of(1, 1, 5), day=DAY).overall.nps == Decimal("-33.33")
    # 5 4 4 2: as many promoters as detractors
    assert aggregate_day(day_of(5, 4, 4, 2), day=DAY).overall.nps == Decimal("0.00")


def test_rounding_is_half_away_from_zero_to_two_decimals() -> None:
    assert percent(1, 20_000) == Decimal("0.01")  # 0.005 exactly: half up, not to even
    assert percent(-1, 20_000) == Decimal("-0.01")
    assert percent(1, 3) == Decimal("33.33") and percent(2, 3) == Decimal("66.67")
    assert percent(0, 0) is None


def test_a_custom_mapping() -> None:
    scale = RatingScale.parse("promoter=4-5; passive=3; detractor=1,2; csat=5")
    figures = aggregate_day(day_of(5, 4, 3, 2), day=DAY, scale=scale)
    assert figures.overall == Counts(responses=4, promoters=2, passives=1, detractors=1, satisfied=1)
    assert (figures.overall.nps, figures.overall.csat_pct) == (Decimal("25.00"), Decimal("25.00"))
    # The classic 0-10 scale; csat left out means the top two ratings.
    ten = RatingScale.parse("promoter=9-10;passive=7-8;detractor=0-6")
    assert ten.csat == {9, 10}
    figures = aggregate_day(day_of(10, 9, 8, 7, 6, 0), day=DAY, scale=ten)
    assert (figures.overall.nps, figures.overall.csat_pct) == (Decimal("0.00"), Decimal("33.33"))
    assert ten.describe() == "promoter=9-10;passive=7-8;detractor=0-6;csat=9-10"
    assert RatingScale.parse(ten.describe()) == ten
    assert DEFAULT_SCALE.describe() == "promoter=5;passive=4;detractor=1-3;csat=4-5"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("promoter=5;passive=4-5;detractor=1-3", "rating(s) 5 are both promoters and passives"),
        ("promoter=5;passive=4", "no detractor ratings"),
        ("promoter=5;passive=4;detractor=1-3;csat=4-6", "csat rating(s) 6 are not on the scale"),
        ("promoter=5;detractor=1-3;fans=4", "'fans=4' is not 'category=ratings'"),
        ("promoter=5;detractor=3-1", "range '3-1' is reversed"),
        ("promoter=five;detractor=1", "'five' is not a rating"),
    ],
)
def test_bad_mappings_are_refused_with_the_setting_named(text: str, message: str) -> None:
    with pytest.raises(NpsSettingError) as error:
        RatingScale.parse(text)
    assert f"NPS_RATING_MAP={text!r}" in str(error.value) and message in str(error.value)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"rating": 7}, "rating 7 is not on the scale 1-5"),
        ({"rating": "5"}, "rating '5' is not on the scale 1-5"),
        ({"rating": True}, "rating True is not on the scale 1-5"),
        ({"rating": None}, "rating None is not on the scale 1-5"),
        ({"rating": 5, "survey_date": "2026-11-11"}, "belongs to the day '2026-11-11', not 2026-11-10"),
    ],
)
def test_an_answer_that_cannot_be_counted_names_the_day_and_the_answer(bad: dict[str, Any], problem: str) -> None:
    answers = [*day_of(5, 4), {"contact_id": "c-bad", "survey_date": DAY.isoformat(), **bad}]
    with pytest.raises(InvalidResponseError) as error:
        aggregate_day(answers, day=DAY)
    assert str(error.value).startswith("2026-11-10: answer contact_id='c-bad': " + problem)


def test_per_queue_and_per_agent_where_known() -> None:
    answers = [
        answer(5, queue="Sales", agent="alice", n=1),
        answer(5, queue="Sales", agent="bob", n=2),
        answer(4, queue="Sales", agent="alice", n=3),
        answer(3, queue="Support", agent="bob", n=4),
        answer(1, queue="Support", agent="carol", n=5),
        answer(5, queue="Support", agent="carol", n=6),
        answer(2, n=7),  # neither queue nor agent: overall only
        answer(5, queue="Sales", n=8),  # no agent
    ]
    figures = aggregate_day(answers, day=DAY)
    assert figures.overall == Counts(8, 4, 1, 3, 5)
    assert (figures.overall.nps, figures.overall.csat_pct) == (Decimal("12.50"), Decimal("62.50"))
    assert figures.queues == {"Sales": Counts(4, 3, 1, 0, 4), "Support": Counts(3, 1, 0, 2, 1)}
    assert figures.agents == {
        "alice": Counts(2, 1, 1, 0, 2),
        "bob": Counts(2, 1, 0, 1, 1),
        "carol": Counts(2, 1, 0, 1, 1),
    }
    assert [(r.dimension, r.key, r.counts.nps) for r in figures.rows()] == [
        (OVERALL, "", Decimal("12.50")),
        (QUEUE, "Sales", Decimal("75.00")),
        (QUEUE, "Support", Decimal("-33.33")),
        (AGENT, "alice", Decimal("50.00")),
        (AGENT, "bob", Decimal("0.00")),
        (AGENT, "carol", Decimal("0.00")),
    ]


def test_answers_stream_through_in_bounded_memory() -> None:
    """A generator of answers is read once and none is kept: memory is the counters of 50 agents.

    (1M answers: ``bench/nps_aggregate.py``; tracemalloc makes this slow, so 100,000 here.)"""
    count = 100_000

    def answers() -> Iterator[dict[str, Any]]:
        for i in range(count):
            yield {"contact_id": f"c-{i}", "rating": i % 5 + 1, "queue": f"q{i % 7}", "agent": f"agent-{i % 50}"}

    tracemalloc.start()
    try:
        figures = aggregate_day(answers(), day=DAY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert figures.overall == Counts(count, count // 5, count // 5, 3 * count // 5, 2 * count // 5)
    assert figures.overall.nps == Decimal("-40.00") and len(figures.agents) == 50
    assert peak < 1_000_000, f"peak {peak} bytes: answers are being kept"


def test_the_nps_package_never_imports_airflow() -> None:
    offenders = []
    for path in (ROOT / "plugins" / "entity_etl" / "nps").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] == "airflow" or n.startswith("entity_etl.orchestration")
            ]
    assert offenders == []


# -- the day of a data interval, and settings ------------------------------------------------------
def test_the_day_of_a_data_interval() -> None:
    utc = dt.UTC
    assert (
        job.day_of_interval(
            dt.datetime(2026, 11, 10, tzinfo=utc), dt.datetime(2026, 11, 11, tzinfo=utc), timezone="UTC"
        )
        == DAY
    )
    # Berlin (UTC+1 in November): the day 2026-11-10 is [09T23:00Z, 10T23:00Z).
    start, end = dt.datetime(2026, 11, 9, 23, tzinfo=utc), dt.datetime(2026, 11, 10, 23, tzinfo=utc)
    assert job.day_of_interval(start, end, timezone="Europe/Berlin") == DAY
    # A 23-hour day (clocks go forward on 2026-03-29 in Berlin) is still one day.
    spring = (dt.datetime(2026, 3, 28, 23, tzinfo=utc), dt.datetime(2026, 3, 29, 22, tzinfo=utc))
    assert job.day_of_interval(*spring, timezone="Europe/Berlin") == dt.date(2026, 3, 29)
    with pytest.raises(job.NpsJobError, match=r"is not one whole day in UTC"):
        job.day_of_interval(start, end, timezone="UTC")
    with pytest.raises(job.NpsJobError, match=r"is not one whole day in UTC"):
        job.day_of_interval(dt.datetime(2026, 11, 9, tzinfo=utc), dt.datetime(2026, 11, 11, tzinfo=utc), timezone="UTC")


def test_settings_defaults_and_lookup(tmp_path: Path) -> None:
    values = {
        "SURVEY_RESPONSES_TABLE": "Answers",
        "NPS_REPORTING_CONN_ID": "reporting",
        "NPS_REPORT_TABLE": "reports.nps_daily",
        "NPS_OBJECT_STORE_URL": str(tmp_path),
        "NPS_OBJECT_PREFIX": "/nps/",
        "NPS_RATING_MAP": "promoter=5;detractor=1-4",
        "NPS_TREND_DAYS": "30",
    }
    settings = NpsSettings.from_lookup(values.get)
    assert settings == NpsSettings(
        responses_table="Answers",
        reporting_conn_id="reporting",
        report_table="reports.nps_daily",
        object_store_url=str(tmp_path),
        object_prefix="nps",
        scale=RatingScale.parse("promoter=5;detractor=1-4;csat=4-5"),
        trend_days=30,
    )
    defaults = NpsSettings.from_lookup(lambda name: None)
    assert (defaults.responses_table, defaults.reporting_conn_id, defaults.report_table) == (
        "SurveyResponses",
        "survey_reporting",
        "survey_nps_daily",
    )
    assert (defaults.scale, defaults.trend_days, defaults.object_prefix) == (DEFAULT_SCALE, 90, "survey-nps")
    for name, value, message in [
        ("NPS_REPORT_TABLE", "nps; DROP TABLE x", "NPS_REPORT_TABLE: 'nps; DROP TABLE x' is not a safe SQL table name"),
        ("NPS_TREND_DAYS", "ninety", "NPS_TREND_DAYS='ninety': use a whole number of days"),
    ]:
        with pytest.raises(NpsSettingError, match=message):
            NpsSettings.from_lookup({name: value}.get)


# -- the reporting table ----------------------------------------------------------------------------
@pytest.fixture
def reporting_db(mariadb: MariaDB, mariadb_db: str) -> Iterator[Database]:
    db = open_database(parse_connection("survey_reporting", mariadb.conn_json(mariadb_db)))
    db.connect()
    yield db
    db.close()


def table_rows(mariadb: MariaDB, database: str, table: str = "survey_nps_daily") -> list[tuple[Any, ...]]:
    """Every row, through a connection of its own (what another reader sees)."""
    conn = mariadb.connect(database)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT * FROM `{table}` ORDER BY report_date, dimension, dimension_key")
        return list(cursor.fetchall())
    finally:
        conn.close()


def figures_of(day: dt.date, answers: Sequence[tuple[int, str | None, str | None]]) -> Any:
    return aggregate_day(
        [{"contact_id": f"c-{i}", "rating": r, "queue": q, "agent": a} for i, (r, q, a) in enumerate(answers)], day=day
    )


@pytest.mark.mariadb
def test_replace_day_on_mariadb_reruns_identically_and_leaves_other_days_alone(
    mariadb: MariaDB, mariadb_db: str, reporting_db: Database
) -> None:
    other = dt.date(2026, 11, 9)
    ensure_table(reporting_db, "survey_nps_daily")
    ensure_table(reporting_db, "survey_nps_daily")  # idempotent
    day_answers = [(5, "Sales", "alice"), (4, "Sales", "bob"), (1, "Support", "bob")]
    assert (
        replace_day(reporting_db, table="survey_nps_daily", figures=figures_of(DAY, day_answers), timezone="UTC") == 5
    )
    assert (
        replace_day(
            reporting_db, table="survey_nps_daily", figures=figures_of(other, [(2, "Sales", "carol")]), timezone="UTC"
        )
        == 3
    )
    first = table_rows(mariadb, mariadb_db)
    assert [r for r in first if r[0] == DAY] == [
        (DAY, "agent", "alice", 1, 1, 0, 0, 1, Decimal("100.00"), Decimal("100.00"), DEFAULT_SCALE.describe(), "UTC"),
        (DAY, "agent", "bob", 2, 0, 1, 1, 1, Decimal("-50.00"), Decimal("50.00"), DEFAULT_SCALE.describe(), "UTC"),
        (DAY, "overall", "", 3, 1, 1, 1, 2, Decimal("0.00"), Decimal("66.67"), DEFAULT_SCALE.describe(), "UTC"),
        (DAY, "queue", "Sales", 2, 1, 1, 0, 2, Decimal("50.00"), Decimal("100.00"), DEFAULT_SCALE.describe(), "UTC"),
        (DAY, "queue", "Support", 1, 0, 0, 1, 0, Decimal("-100.00"), Decimal("0.00"), DEFAULT_SCALE.describe(), "UTC"),
    ]
    other_rows = [r for r in first if r[0] == other]

    # A rerun with the same answers: the same rows, byte for byte.
    replace_day(reporting_db, table="survey_nps_daily", figures=figures_of(DAY, day_answers), timezone="UTC")
    assert table_rows(mariadb, mariadb_db) == first

    # A rerun after bob's answers went: his row goes too (replaced, not merged); the other day stays.
    replace_day(reporting_db, table="survey_nps_daily", figures=figures_of(DAY, day_answers[:1]), timezone="UTC")
    rows = table_rows(mariadb, mariadb_db)
    assert [(r[1], r[2]) for r in rows if r[0] == DAY] == [("agent", "alice"), ("overall", ""), ("queue", "Sales")]
    assert [r for r in rows if r[0] == other] == other_rows

    # An empty day keeps its overall row, with NULL figures.
    replace_day(reporting_db, table="survey_nps_daily", figures=figures_of(DAY, []), timezone="UTC")
    assert [r[:10] for r in table_rows(mariadb, mariadb_db) if r[0] == DAY] == [
        (DAY, "overall", "", 0, 0, 0, 0, 0, None, None)
    ]


@pytest.mark.mariadb
def test_a_failed_replace_keeps_the_days_previous_rows(
    mariadb: MariaDB, mariadb_db: str, reporting_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_table(reporting_db, "survey_nps_daily")
    replace_day(
        reporting_db, table="survey_nps_daily", figures=figures_of(DAY, [(5, "Sales", "alice")]), timezone="UTC"
    )
    before = table_rows(mariadb, mariadb_db)
    real_execute = reporting_db.execute

    def fail_on_insert(sql: str, params: Any = None) -> int:
        if sql.startswith("INSERT"):
            # The day's DELETE has run in this transaction: the insert fails on the server.
            return real_execute(sql.replace("`nps`", "`no_such_column`"), params)
        return real_execute(sql, params)

    monkeypatch.setattr(reporting_db, "execute", fail_on_insert)
    with pytest.raises(ReportTableError, match=r"^2026-11-10: cannot replace the day's rows in survey_nps_daily: "):
        replace_day(
            reporting_db, table="survey_nps_daily", figures=figures_of(DAY, [(1, "Support", "bob")]), timezone="UTC"
        )
    assert table_rows(mariadb, mariadb_db) == before  # rolled back: the DELETE never showed


@pytest.mark.mariadb
def test_reading_the_day_and_the_trend_back(reporting_db: Database) -> None:
    ensure_table(reporting_db, "survey_nps_daily")
    for offset, ratings in enumerate([(5, 5, 1), (4,), (), (5, 1, 1, 1)]):
        day = DAY - dt.timedelta(days=3 - offset)
        replace_day(
            reporting_db,
            table="survey_nps_daily",
            figures=figures_of(day, [(r, "Q", None) for r in ratings]),
            timezone="UTC",
        )
    rows = read_day_rows(reporting_db, table="survey_nps_daily", day=DAY)
    assert [(r["dimension"], r["dimension_key"], r["responses"], r["nps"]) for r in rows] == [
        ("overall", "", 4, Decimal("-50.00")),
        ("queue", "Q", 4, Decimal("-50.00")),
    ]
    assert list(rows[0]) == list(COLUMNS)
    trend = read_trend(reporting_db, table="survey_nps_daily", end_day=DAY, days=3)  # the first day is out
    assert [(p.day.day, p.responses, p.nps, p.csat_pct) for p in trend] == [
        (8, 1, Decimal("0.00"), Decimal("100.00")),
        (9, 0, None, None),
        (10, 4, Decimal("-50.00"), Decimal("25.00")),
    ]


def test_the_reporting_table_on_sqlite(tmp_path: Path) -> None:
    db = open_database(
        parse_connection("survey_reporting", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "r.db")}))
    )
    with db:
        ensure_table(db, "survey_nps_daily")
        replace_day(
            db, table="survey_nps_daily", figures=figures_of(DAY, [(5, "Q", "a"), (2, "Q", "b")]), timezone="UTC"
        )
        replace_day(db, table="survey_nps_daily", figures=figures_of(DAY, [(5, "Q", "a")]), timezone="UTC")
        rows = read_day_rows(db, table="survey_nps_daily", day=DAY)
        trend = read_trend(db, table="survey_nps_daily", end_day=DAY, days=90)
    assert [(r["dimension"], r["dimension_key"], r["nps"]) for r in rows] == [
        ("overall", "", Decimal("100.00")),
        ("queue", "Q", Decimal("100.00")),
        ("agent", "a", Decimal("100.00")),
    ]
    assert trend[0].day == DAY and trend[0].csat_pct == Decimal("100.00")


# -- one day end to end without Airflow ----------------------------------------------------------------
def create_responses_table() -> str:
    assert RESPONSES_SPEC.exists(), "the responses table's definition moved"
    spec = json.loads(RESPONSES_SPEC.read_text())
    boto3.client("dynamodb").create_table(**spec)
    return str(spec["TableName"])


def put_answers(table: str, day: dt.date, answers: list[tuple[str, int, str | None, str | None]]) -> None:
    client = boto3.client("dynamodb")
    for i, (contact, rating, queue, agent) in enumerate(answers):
        item = response_item(
            contact_id=contact,
            phone_number="+441632960123",
            survey_date=day.isoformat(),
            responded_at=f"{day.isoformat()}T{8 + i // 60:02d}:{i % 60:02d}:00.000Z",
            rating=rating,
            original_contact_id=f"orig-{contact}",
            agent=agent,
            queue=queue,
        )
        client.put_item(TableName=table, Item=item)


#: The DAG test's day, by hand: 8 answers, promoters 4, passives 1, detractors 3, satisfied (4-5) 5.
#: NPS (4 - 3) / 8 = 12.50, CSAT 5 / 8 = 62.50. Sales: 4 answers, NPS 75.00; Support: 3, NPS -33.33.
DAG_DAY_ANSWERS: list[tuple[str, int, str | None, str | None]] = [
    ("c01", 5, "Sales", "alice"),
    ("c02", 5, "Sales", "bob"),
    ("c03", 4, "Sales", "alice"),
    ("c04", 3, "Support", "bob"),
    ("c05", 1, "Support", "carol"),
    ("c06", 5, "Support", "carol"),
    ("c07", 2, None, None),
    ("c08", 5, "Sales", None),
]
EXPECTED_DAY_ROWS = [
    ("overall", "", 8, 4, 1, 3, 5, Decimal("12.50"), Decimal("62.50")),
    ("queue", "Sales", 4, 3, 1, 0, 4, Decimal("75.00"), Decimal("100.00")),
    ("queue", "Support", 3, 1, 0, 2, 1, Decimal("-33.33"), Decimal("33.33")),
    ("agent", "alice", 2, 1, 1, 0, 2, Decimal("50.00"), Decimal("100.00")),
    ("agent", "bob", 2, 1, 0, 1, 1, Decimal("0.00"), Decimal("50.00")),
    ("agent", "carol", 2, 1, 0, 1, 1, Decimal("0.00"), Decimal("50.00")),
]


@pytest.mark.mariadb
@pytest.mark.moto
def test_compute_and_publish_a_day_without_airflow(
    aws: MotoServer, mariadb: MariaDB, mariadb_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = create_responses_table()
    put_answers(table, DAY, DAG_DAY_ANSWERS)
    put_answers(table, DAY + dt.timedelta(days=1), [("c99", 1, "Sales", "alice")])  # another day: not counted
    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_REPORTING", mariadb.conn_json(mariadb_db))
    settings = NpsSettings.from_lookup({"NPS_OBJECT_STORE_URL": str(tmp_path / "objects"), "NPS_TREND_DAYS": "7"}.get)

    summary = job.compute_day(day=DAY, settings=settings, timezone="UTC")
    files = job.publish_day(day=DAY, settings=settings)

    assert {k: summary[k] for k in ("day", "responses", "nps", "csat_pct", "queues", "agents", "rows")} == {
        "day": "2026-11-10",
        "responses": 8,
        "nps": 12.5,
        "csat_pct": 62.5,
        "queues": 2,
        "agents": 3,
        "rows": 6,
    }
    assert [r[1:10] for r in table_rows(mariadb, mariadb_db)] == sorted(EXPECTED_DAY_ROWS, key=lambda r: (r[0], r[1]))
    assert files == {
        "csv": str(tmp_path / "objects" / "survey-nps" / "day=2026-11-10" / "nps-2026-11-10.csv"),
        "chart": str(tmp_path / "objects" / "survey-nps" / "day=2026-11-10" / "nps-trend-7d-2026-11-10.png"),
    }
    lines = Path(files["csv"]).read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert lines[1] == "2026-11-10,overall,,8,4,1,3,5,12.50,62.50,promoter=5;passive=4;detractor=1-3;csat=4-5,UTC"
    assert len(lines) == 7
    assert Path(files["chart"]).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.moto
def test_reading_a_missing_table_names_the_day_and_the_table(aws: MotoServer) -> None:
    with pytest.raises(job.NpsJobError) as error:
        job.compute_day(day=DAY, settings=NpsSettings(responses_table="NoSuchTable"), timezone="UTC")
    assert str(error.value).startswith(
        "2026-11-10: cannot read the answers from DynamoDB table 'NoSuchTable' (index SurveyDateIndex): ResourceNotFoundException"
    )


def query_calls(client: Any) -> list[str]:
    """The operation names ``client`` sends, recorded by botocore's own event."""
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    return calls


@pytest.mark.moto
def test_the_job_counts_the_answers_page_by_page(aws: MotoServer) -> None:
    """``read_answers`` is ``iter_day`` (a page at a time), not a list: the first answer costs one Query,
    and the day's figures are those of the hand-computed day."""
    from lambdas.survey.responses import iter_day

    table = create_responses_table()
    put_answers(table, DAY, DAG_DAY_ANSWERS)
    put_answers(table, DAY + dt.timedelta(days=1), [("c99", 1, "Sales", "alice")])
    client = boto3.client("dynamodb")
    calls = query_calls(client)

    def two_per_page(table: str, day: dt.date, *, client: Any = None) -> Iterator[Any]:
        return iter_day(table, day, client=client, page_size=2)

    answers = job.read_answers(day=DAY, table=table, client=client, reader=two_per_page)
    assert not isinstance(answers, list) and calls == []
    first = next(answers)
    assert first["contact_id"] == "c01" and calls == ["Query"]
    figures = aggregate_day([first, *answers], day=DAY)

    assert 4 <= len(calls) <= 5 and set(calls) == {"Query"}  # 8 answers, 2 per page
    overall = EXPECTED_DAY_ROWS[0]
    assert figures.overall == Counts(*overall[2:7])
    assert (figures.overall.nps, figures.overall.csat_pct) == overall[7:9]
    import lambdas.survey.responses as lambda_reader

    from entity_etl import survey_reader

    assert job.lambda_iter_day() is survey_reader.iter_day  # what compute_day reads with when no reader is given
    assert Path(lambda_reader.__file__).resolve() == Path(survey_reader.__file__).resolve()  # one file, two homes


@pytest.mark.moto
def test_a_read_that_fails_part_way_through_the_day_names_the_day_and_the_table(aws: MotoServer) -> None:
    from lambdas.survey.responses import iter_day

    table = create_responses_table()
    put_answers(table, DAY, DAG_DAY_ANSWERS)
    client = boto3.client("dynamodb")

    def two_per_page(table: str, day: dt.date, *, client: Any = None) -> Iterator[Any]:
        return iter_day(table, day, client=client, page_size=2)

    answers = job.read_answers(day=DAY, table=table, client=client, reader=two_per_page)
    assert [next(answers)["contact_id"], next(answers)["contact_id"]] == ["c01", "c02"]  # the first page
    client.update_table(TableName=table, DeletionProtectionEnabled=False)  # the definition protects it
    client.delete_table(TableName=table)
    with pytest.raises(job.NpsJobError) as error:
        next(answers)
    assert str(error.value).startswith(
        f"2026-11-10: cannot read the answers from DynamoDB table {table!r} (index SurveyDateIndex): "
        "ResourceNotFoundException"
    )


def test_an_answer_that_cannot_be_counted_is_not_called_a_read_error() -> None:
    """The aggregator's errors stay its own: only the reader's are turned into read errors."""
    answers = job.read_answers(day=DAY, table="SurveyResponses", reader=lambda *a, **k: day_of(5, 9))
    with pytest.raises(InvalidResponseError, match="rating 9"):
        aggregate_day(answers, day=DAY)


def test_an_unknown_reporting_connection_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(job.NpsJobError, match=r"^2026-11-10: the reporting connection 'nowhere' cannot be resolved"):
        job.compute_day(
            day=DAY, settings=NpsSettings(reporting_conn_id="nowhere"), timezone="UTC", reader=lambda *a, **k: []
        )


def test_an_unreachable_reporting_database_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from support.servers import free_port

    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_REPORTING", f"mysql://reporter:s3cret-pw@127.0.0.1:{free_port()}/reports")
    with pytest.raises(job.NpsJobError) as error:
        job.compute_day(day=DAY, settings=NpsSettings(), timezone="UTC", reader=lambda *a, **k: day_of(5, 1))
    assert str(error.value).startswith("2026-11-10: cannot connect to survey_reporting (mysql 127.0.0.1:")
    assert "s3cret-pw" not in str(error.value)


# -- the DAG ------------------------------------------------------------------------------------------
def nps_bag(monkeypatch: pytest.MonkeyPatch | None = None, **env: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    for name, value in env.items():
        assert monkeypatch is not None
        monkeypatch.setenv(name, value)
    return DagBag(dag_folder=str(DAGS / "survey_nps_daily.py"), safe_mode=True)


def test_dag_integrity() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import CronDataIntervalTimetable

    bag = DagBag(dag_folder=str(DAGS), safe_mode=True)
    assert bag.import_errors == {}
    dag = bag.dags["survey_nps_daily"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable), "a run must own its day"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 0 * * *", "UTC")
    assert (dag.max_active_runs, dag.catchup) == (1, False)
    edges = sorted((t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids)
    assert edges == [
        ("compute_day", "notify"),
        ("compute_day", "publish_files"),
        ("publish_files", "notify"),
        ("wait_for_answers", "compute_day"),
    ]
    assert "not comparable with 0–10 NPS benchmarks" in (dag.doc_md or "")
    assert {t.owner for t in dag.tasks} == {"survey"}
    assert dag.task_dict["compute_day"].on_failure_callback, "a failed day is alerted on"


def test_the_timezone_shapes_the_timetable(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = nps_bag(monkeypatch, SURVEY_TIMEZONE="Europe/Berlin", NPS_SETTLE_MINUTES="30")
    dag = bag.dags["survey_nps_daily"]
    assert str(dag.timetable.timezone) == "Europe/Berlin"
    assert dag.task_dict["wait_for_answers"].delta == dt.timedelta(minutes=30)


def test_a_bad_parse_time_setting_is_an_import_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = nps_bag(monkeypatch, SURVEY_TIMEZONE="Mars/Olympus_Mons")
    ((path, error),) = bag.import_errors.items()
    assert path.endswith("survey_nps_daily.py")
    assert "SURVEY_TIMEZONE='Mars/Olympus_Mons' is not an IANA time zone" in error


def test_parsing_reads_no_network_no_db_and_no_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import Variable

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network, DB or Variable access at parse time: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(sqlite3, "connect", refuse)
    monkeypatch.setattr(Variable, "get", refuse)
    bag = nps_bag()
    assert bag.import_errors == {} and bag.dag_ids == ["survey_nps_daily"]


def test_a_task_of_another_dag_does_not_build_this_one(monkeypatch: pytest.MonkeyPatch) -> None:
    bag = nps_bag(monkeypatch, _AIRFLOW_PARSING_CONTEXT_DAG_ID="etl_jp", _AIRFLOW_PARSING_CONTEXT_TASK_ID="extract")
    assert bag.import_errors == {} and bag.dag_ids == []


@pytest.fixture(scope="session")
def nps_airflow_db() -> Path:
    """A migrated Airflow metadata DB (SQLite) in the test session's AIRFLOW_HOME."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return home


def sns_tap() -> tuple[str, str]:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="survey-nps")["TopicArn"]
    queue = sqs.create_queue(QueueName="survey-nps-tap")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def drain(queue_url: str, expect: int) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < expect and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        time.sleep(0.1)
    return found


@pytest.mark.slow
@pytest.mark.mariadb
@pytest.mark.moto
def test_the_dag_runs_a_day_through_airflow_and_a_rerun_changes_nothing(
    nps_airflow_db: Path,
    aws: MotoServer,
    mariadb: MariaDB,
    mariadb_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Berlin days: the run whose interval is [09T23:00Z, 10T23:00Z) computes 2026-11-10, and only it."""
    table = create_responses_table()
    put_answers(table, DAY, DAG_DAY_ANSWERS)
    put_answers(table, DAY + dt.timedelta(days=1), [("c90", 1, "Sales", "alice")])
    put_answers(table, DAY - dt.timedelta(days=1), [("c80", 5, "Sales", "alice"), ("c81", 4, "Support", "dave")])
    topic, queue = sns_tap()
    objects = tmp_path / "objects"
    for name, value in {
        "SURVEY_TIMEZONE": "Europe/Berlin",
        "SURVEY_RESPONSES_TABLE": table,
        "NPS_NOTIFY_TOPIC_ARN": topic,
        "NPS_OBJECT_STORE_URL": str(objects),
        "AIRFLOW_CONN_SURVEY_REPORTING": mariadb.conn_json(mariadb_db),
        # An Airflow Variable (Airflow reads AIRFLOW_VAR_* as Variables): the table name comes from it.
        "AIRFLOW_VAR_NPS_REPORT_TABLE": "nps_daily",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NPS_REPORT_TABLE", raising=False)
    # The day before, computed earlier (a previous run): the DAG's run must leave it as it is.
    earlier = NpsSettings.from_lookup({"NPS_REPORT_TABLE": "nps_daily"}.get)
    job.compute_day(day=DAY - dt.timedelta(days=1), settings=earlier, timezone="Europe/Berlin")
    day_before = table_rows(mariadb, mariadb_db, "nps_daily")

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS), safe_mode=True)
    assert bag.import_errors == {}
    dag = bag.dags["survey_nps_daily"]
    logical_date = dt.datetime(2026, 11, 11, tzinfo=dt.timezone(dt.timedelta(hours=1)))  # Berlin midnight

    def run() -> tuple[list[tuple[Any, ...]], bytes, bytes]:
        dag_run = dag.test(logical_date=logical_date)
        assert str(dag_run.state) == "success"
        assert dag_run.data_interval_start == dt.datetime(2026, 11, 9, 23, tzinfo=dt.UTC)
        assert dag_run.data_interval_end == dt.datetime(2026, 11, 10, 23, tzinfo=dt.UTC)
        folder = objects / "survey-nps" / "day=2026-11-10"
        return (
            table_rows(mariadb, mariadb_db, "nps_daily"),
            (folder / "nps-2026-11-10.csv").read_bytes(),
            (folder / "nps-trend-90d-2026-11-10.png").read_bytes(),
        )

    rows, csv_bytes, png = run()
    assert [r for r in rows if r[0] == DAY - dt.timedelta(days=1)] == day_before
    day_rows = [r for r in rows if r[0] == DAY]
    assert [r[1:10] for r in day_rows] == sorted(EXPECTED_DAY_ROWS, key=lambda r: (r[0], r[1]))
    assert {r[11] for r in day_rows} == {"Europe/Berlin"}
    assert {r[0] for r in rows} == {DAY - dt.timedelta(days=1), DAY}  # 2026-11-11's answer is not counted
    csv_lines = csv_bytes.decode().splitlines()
    assert csv_lines[0] == ",".join(COLUMNS) and len(csv_lines) == 7
    assert csv_lines[1].startswith("2026-11-10,overall,,8,4,1,3,5,12.50,62.50,")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    (event,) = drain(queue, expect=1)
    assert (event["kind"], event["dag_id"], event["entity"]) == ("run_succeeded", "survey_nps_daily", None)
    report = event["summary"]["report"]
    assert {k: report[k] for k in ("day", "timezone", "responses", "nps", "csat_pct", "queues", "agents", "table")} == {
        "day": "2026-11-10",
        "timezone": "Europe/Berlin",
        "responses": 8,
        "nps": 12.5,
        "csat_pct": 62.5,
        "queues": 2,
        "agents": 3,
        "table": "nps_daily",
    }
    assert report["csv"].endswith("nps-2026-11-10.csv") and report["chart"].endswith("nps-trend-90d-2026-11-10.png")
    assert event["summary"]["row_counts"] == {"responses": 8}

    # The Teams Lambda turns the event into a card as it is (an ordinary run_succeeded event).
    teams = load_teams_handler("teams_handler_for_nps")
    card, fields = teams.build_card(json.dumps(event))
    assert fields["kind"] == "run_succeeded"
    facts = {f["title"]: f["value"] for f in card["attachments"][0]["content"]["body"][1]["facts"]}
    # Card values are Markdown-escaped: "_" shows as itself, never as emphasis.
    assert facts["DAG"] == r"survey\_nps\_daily" and facts["Rows responses"] == "8"

    # Another run of the same day (a backfill, a manual run): the same rows, the same files, the same report.
    assert run() == (rows, csv_bytes, png)
    (again,) = drain(queue, expect=1)
    assert again["run_id"] != event["run_id"] and again["summary"]["report"] == report
