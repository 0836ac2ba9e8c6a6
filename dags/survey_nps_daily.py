"""Airflow DAG ``survey_nps_daily``: the daily NPS and CSAT of the Amazon Connect post-call survey.

The logic is Airflow-free in ``plugins/entity_etl/nps/`` (see its README.md); this file wires it into
Airflow: the timetable, the tasks, the settings lookup and the notifications.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG, CronDataIntervalTimetable, get_parsing_context, task

from entity_etl.nps import settings as nps_settings
from entity_etl.orchestration.notifier import SnsEventNotifier

DAG_ID = "survey_nps_daily"


def doc_md(*, timezone: str, settle_minutes: int) -> str:
    return f"""
### Survey NPS, daily

For each day (its data interval, midnight to midnight in `{timezone}`, the `SURVEY_TIMEZONE`):

1. `wait_for_answers` waits until {settle_minutes} min after the day's end (the index read next is
   eventually consistent); at once for a past day (a backfill);
2. `compute_day` reads the day's answers (`entity_etl.survey_reader` `iter_day`: one Query on
   `SurveyDateIndex`), counts promoters, passives, detractors and CSAT overall, per queue and per
   agent, and replaces the day's rows of the reporting table in one transaction;
3. `publish_files` writes the day's CSV and the trend chart (PNG) to object storage under
   `<prefix>/day=YYYY-MM-DD/`;
4. `notify` posts the summary (`run_succeeded` event, `summary.report`) to SNS, or to the task log
   without a topic. A task that fails for good posts `task_failed`, a failed run `dag_run_failed`.

**NPS on a 1–5 scale is not comparable with 0–10 NPS benchmarks**: with the default mapping
(5 promoter, 4 passive, 1–3 detractor) compare it only with itself over time.

Every step is idempotent for its day: a rerun (Clear) or a backfill recomputes exactly its days,
e.g. `airflow backfill create --dag-id {DAG_ID} --from-date 2026-11-01 --to-date 2026-11-30
--max-active-runs 1` (one at a time, so each day's chart includes the days before it).

Settings (environment, else the Airflow Variable of the same name in lower case): `SURVEY_RESPONSES_TABLE`,
`NPS_REPORTING_CONN_ID` (default `survey_reporting`), `NPS_REPORT_TABLE`, `NPS_OBJECT_STORE_URL`
(else `ETL_OBJECT_STORE_URL`), `NPS_OBJECT_PREFIX`, `NPS_RATING_MAP`, `NPS_TREND_DAYS`. Parse time
(environment only): `SURVEY_TIMEZONE`, `NPS_START_DATE`, `NPS_SETTLE_MINUTES`, `NPS_NOTIFY_TOPIC_ARN`.
See `plugins/entity_etl/nps/README.md`.
"""


def _setting(name: str) -> str | None:
    """A run-time setting: the environment variable, else the Airflow Variable ``name.lower()``."""
    value = os.environ.get(name)
    if value:
        return value
    from airflow.sdk import Variable

    found = Variable.get(name.lower(), default=None)
    return None if found is None else str(found)


def _day(context: dict[str, Any], timezone: str) -> dt.date:
    from entity_etl.nps.job import day_of_interval

    return day_of_interval(context["data_interval_start"], context["data_interval_end"], timezone=timezone)


def _dag_arguments(timezone: str, start_date: dt.date, settle_minutes: int, topic_arn: str | None) -> dict[str, Any]:
    """The DAG's schedule, ownership, retries and failure notifications."""
    return dict(
        dag_id=DAG_ID,
        description="Daily NPS and CSAT of the Connect post-call survey: reporting table, CSV, chart, summary",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone=timezone),
        start_date=dt.datetime.combine(start_date, dt.time(), tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,  # days in order: each day's chart reads the days before it from the table
        doc_md=doc_md(timezone=timezone, settle_minutes=settle_minutes),
        tags=["survey", "nps"],
        default_args={
            "owner": "survey",
            "retries": 2,
            "retry_delay": dt.timedelta(minutes=5),
            "on_failure_callback": SnsEventNotifier("task_failed", topic_arn=topic_arn),
        },
        on_failure_callback=SnsEventNotifier("dag_run_failed", topic_arn=topic_arn),
    )


def build_dag(
    *,
    timezone: str | None = None,
    start_date: dt.date | None = None,
    settle_minutes: int | None = None,
    topic_arn: str | None = None,
) -> DAG:
    """The DAG. Unset arguments come from the parse-time settings (the environment only)."""
    timezone = nps_settings.check_timezone(timezone) if timezone else nps_settings.survey_timezone()
    start_date = start_date or nps_settings.start_date()
    settle_minutes = nps_settings.settle_minutes() if settle_minutes is None else settle_minutes
    topic_arn = topic_arn or nps_settings.notify_topic_arn()
    with DAG(**_dag_arguments(timezone, start_date, settle_minutes, topic_arn)) as dag:
        wait_for_answers = TimeDeltaSensor(
            task_id="wait_for_answers",
            delta=dt.timedelta(minutes=settle_minutes),
            mode="reschedule",
            poke_interval=60,
            timeout=6 * 3600,
            doc_md="Wait until the day has ended plus `NPS_SETTLE_MINUTES` (no wait for a past day).",
        )

        @task(task_id="compute_day", execution_timeout=dt.timedelta(hours=2))
        def compute_day(**context: Any) -> dict[str, Any]:
            """Read the day's answers, count them, replace the day's rows in the reporting table."""
            from entity_etl.nps import job
            from entity_etl.nps.settings import NpsSettings
            from entity_etl.orchestration.db_hooks import open_airflow_database

            return job.compute_day(
                day=_day(context, timezone),
                settings=NpsSettings.from_lookup(_setting),
                timezone=timezone,
                opener=open_airflow_database,
            )

        @task(task_id="publish_files", execution_timeout=dt.timedelta(minutes=30))
        def publish_files(**context: Any) -> dict[str, str]:
            """The day's CSV and trend chart, from the reporting table, to object storage."""
            from entity_etl.nps import job
            from entity_etl.nps.settings import NpsSettings
            from entity_etl.orchestration.db_hooks import open_airflow_database

            return job.publish_day(
                day=_day(context, timezone), settings=NpsSettings.from_lookup(_setting), opener=open_airflow_database
            )

        @task(task_id="notify", retries=0)
        def notify(day_summary: Any, files: Any, **context: Any) -> str | None:  # XComArgs here, dicts in the task
            """Post the day's summary through the project's notifier (never fails the run)."""
            from entity_etl.nps.job import notification_summary

            event = SnsEventNotifier("run_succeeded", topic_arn=topic_arn).send(
                context, summary=notification_summary(day_summary, files)
            )
            return None if event is None else str(event["event_id"])

        computed = compute_day()
        published = publish_files()
        wait_for_answers >> computed >> published
        notify(computed, published)
    return dag


# A task of another DAG being started parses only what it needs: build this DAG only for itself.
if get_parsing_context().dag_id in (None, DAG_ID):
    dag = build_dag()
