"""``make demo``, second part: survey answers through the real Lambda handlers, then the NPS DAG.

1. A moto server (local AWS emulator, no AWS account) holds the survey tables, created from
   ``lambdas/survey/infra/tables/``, and the CTR Kinesis stream. Connect's outbound call is stubbed.
2. ``survey_traffic``'s seeded days are played through ``process_ctr_stream`` and
   ``update_survey_result`` (``survey_handlers``).
3. ``survey_nps_daily`` runs through Airflow (``dag.test``) for each day, reading the answers from
   moto, writing the reporting table to SQLite and the CSV and chart to a local folder.
4. The daily table is printed from the reporting table, with the chart's path.

Run it again: the same answers, so the same figures and the same chart bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from demo.survey_aws import LABEL, STUB_LABEL, CtrStream, SummaryTap, create_tables, moto_server, use_local_aws
from demo.survey_handlers import DayReport, SurveyPlayer
from demo.survey_traffic import DEMO_DAYS, plan_traffic

DAG_ID = "survey_nps_daily"
REPORT_TABLE = "survey_nps_daily"
TREND_DAYS = 14  # the demo has three days: a 14-day chart shows them; the DAG's default is 90


def reporting_environment(survey_dir: Path, objects: Path) -> dict[str, str]:
    """The NPS DAG's run-time settings on the embedded default: SQLite and a local folder."""
    return {
        "AIRFLOW_CONN_SURVEY_REPORTING": json.dumps({"conn_type": "sqlite", "host": str(survey_dir / "reporting.db")}),
        "NPS_REPORT_TABLE": REPORT_TABLE,
        "NPS_OBJECT_STORE_URL": str(objects),
        "NPS_TREND_DAYS": str(TREND_DAYS),
    }


def _print_day(report: DayReport) -> None:
    outcomes = ", ".join(f"{n} {reason}" for reason, n in sorted(report.ctr_outcomes.items()))
    ratings = ", ".join(f"{n} {what}" for what, n in sorted(report.ratings.items()))
    print(f"  {report.day}  {report.ctrs} CTRs in {report.batches} Kinesis batches -> process_ctr_stream: {outcomes}")
    print(f"              ratings -> update_survey_result: {ratings}")
    for label, text in (("redelivered CTR", report.redelivery), ("retried rating", report.retry)):
        if text:
            print(f"              {label}: {text}")
    if report.bad_input:
        print(f"              bad rating: {report.bad_input}")


def _check_logs(log: Path, phones: set[str]) -> str:
    """Fail if any full phone number reached the handlers' logs; return a masked sample line."""
    text = log.read_text(encoding="utf-8")
    leaked = sorted(p for p in phones if p in text or p[1:] in text)
    if leaked:
        raise RuntimeError(f"{len(leaked)} full phone number(s) in the handler logs {log}")
    for line in text.splitlines():
        record = json.loads(line)
        if str(record.get("message", "")).startswith("survey call started"):
            return json.dumps({k: record[k] for k in ("level", "message", "phone", "survey_contact_id")})
    return ""


def play_traffic(survey_dir: Path) -> None:
    import boto3
    from botocore.stub import Stubber
    from lambdas.survey import clients, process_ctr_stream

    print(f"  tables {', '.join(create_tables(boto3.client('dynamodb')))} from lambdas/survey/infra/tables/")
    stream = CtrStream(boto3.client("kinesis"))
    print(f"  CTRs travel through the Kinesis stream {stream.arn} on moto")
    process_ctr_stream.reset_caches()  # a fresh container: clients and idempotency store on moto
    stubber = Stubber(clients.connect())
    stubber.activate()
    print(f"  Amazon Connect StartOutboundVoiceContact: {STUB_LABEL}")
    print("  handler clock: each demo day's own time (the handlers replay past days)")
    plan = plan_traffic()
    player = SurveyPlayer(stream, stubber, survey_dir / "lambda-logs.jsonl")
    try:
        for day, contacts in plan.items():
            _print_day(player.play_day(day, contacts))
    finally:
        stubber.deactivate()
    stored = boto3.client("dynamodb").scan(TableName=os.environ["SURVEY_RESPONSES_TABLE"], Select="COUNT")["Count"]
    print(f"  SurveyResponses now holds {stored} answers")
    sample = _check_logs(player.log_path, {c.phone for contacts in plan.values() for c in contacts})
    print(f"  handler logs: {player.invocations} invocations, JSON lines in {player.log_path}; no full phone number")
    if sample:
        print(f"    e.g. {sample}")


def run_days(bag: Any) -> int:
    """``survey_nps_daily`` through Airflow for each demo day; returns the number of failed runs."""
    import boto3

    dag = bag.get_dag(DAG_ID)
    if dag is None:
        print(f"demo: DAG {DAG_ID} not found")
        return 1
    # The summary goes to SNS on moto (without a topic the notifier would dump the event into the log).
    tap = SummaryTap(boto3.client("sns"), boto3.client("sqs"))
    os.environ["ETL_NOTIFY_TOPIC_ARN"] = tap.topic_arn
    failures = 0
    for day in DEMO_DAYS:
        # A run's data interval is the whole day before its logical date (CronDataIntervalTimetable).
        dag_run = dag.test(logical_date=dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC))
        print(f"{DAG_ID} for {day} run {dag_run.run_id}: {dag_run.state}")
        failures += str(dag_run.state) != "success"
    events = tap.drain()
    days = ", ".join(str(e["summary"]["report"]["day"]) for e in events if e.get("kind") == "run_succeeded")
    print(f"  summary events ({len(events)}) on SNS topic {tap.topic_arn} (moto), read back through SQS: {days}")
    return failures


def print_daily_table(survey_dir: Path, objects: Path) -> None:
    with sqlite3.connect(survey_dir / "reporting.db") as conn:
        rows = conn.execute(
            f"SELECT report_date, dimension, dimension_key, responses, promoters, passives, detractors, nps, "
            f"csat_pct, rating_scale FROM {REPORT_TABLE} WHERE dimension IN ('overall', 'queue') "
            "ORDER BY report_date, dimension <> 'overall', dimension_key"
        ).fetchall()
    scales = sorted({r[-1] for r in rows})
    print(f"\ndemo: daily survey figures ({REPORT_TABLE} in {survey_dir / 'reporting.db'}; scale {', '.join(scales)})")
    print("  NPS on a 1-5 scale: compare it with itself over time, never with 0-10 NPS benchmarks")
    header = ("day", "dimension", "name", "answers", "promoters", "passives", "detractors", "NPS", "CSAT %")
    print("  {:<10}  {:<9}  {:<8}  {:>7}  {:>9}  {:>8}  {:>10}  {:>7}  {:>7}".format(*header))
    for day, dimension, key, *counts, nps, csat, _ in rows:
        print(
            f"  {day:<10}  {dimension:<9}  {key or '-':<8}  {counts[0]:>7}  {counts[1]:>9}  {counts[2]:>8}  "
            f"{counts[3]:>10}  {'-' if nps is None else nps:>7}  {'-' if csat is None else csat:>7}"
        )
    last = DEMO_DAYS[-1].isoformat()
    chart = objects / "survey-nps" / f"day={last}" / f"nps-trend-{TREND_DAYS}d-{last}.png"
    digest = hashlib.sha256(chart.read_bytes()).hexdigest()[:16]
    print(f"\ndemo: NPS chart ({TREND_DAYS} days to {last}, PNG {chart.stat().st_size} bytes, sha256:{digest}):")
    print(f"  {chart}")
    print(f"  each day's CSV and chart: {objects / 'survey-nps'}/day=YYYY-MM-DD/")


def run_survey_demo(bag: Any, demo_dir: Path) -> int:
    """The survey part of ``make demo``; returns the number of failures."""
    survey_dir, objects = demo_dir / "survey", demo_dir / "objects"
    survey_dir.mkdir(parents=True, exist_ok=True)
    day_end = dt.datetime.combine(DEMO_DAYS[-1] + dt.timedelta(days=1), dt.time(), dt.UTC)
    if dt.datetime.now(dt.UTC) < day_end + dt.timedelta(minutes=10):
        # The DAG's sensor waits until a day has ended; a clock before the demo days would wait for days.
        print(f"demo: the survey days {DEMO_DAYS[0]}..{DEMO_DAYS[-1]} have not ended by this machine's clock")
        return 1
    with moto_server(survey_dir / "moto.log") as endpoint:
        use_local_aws(endpoint)
        print(f"\ndemo: survey answers through the real Lambda handlers, on {LABEL} at {endpoint}", flush=True)
        play_traffic(survey_dir)
        os.environ.update(reporting_environment(survey_dir, objects))
        print(f"\ndemo: running {DAG_ID} for {DEMO_DAYS[0]}..{DEMO_DAYS[-1]} through Airflow ...", flush=True)
        failures = run_days(bag)
    if not failures:
        print_daily_table(survey_dir, objects)
    return failures
