"""One survey day end to end, without Airflow: what the tasks of ``survey_nps_daily`` call.

1. :func:`day_of_interval` — the run's data interval → the survey day (the interval must be exactly
   one day, midnight to midnight, in the survey's time zone);
2. :func:`compute_day` — read the day's answers (:mod:`entity_etl.survey_reader` ``iter_day``: one
   paginated Query on ``SurveyDateIndex``), count each page as it arrives (memory: one page and the
   counters, never the day), and replace the day's rows in the reporting table in one transaction;
3. :func:`publish_day` — read the day's rows and the trend back from the reporting table, and write
   the CSV and the PNG chart to object storage under day-scoped keys
   (``<prefix>/day=YYYY-MM-DD/nps-YYYY-MM-DD.csv`` and ``.../nps-trend-<N>d-YYYY-MM-DD.png``);
4. :func:`notification_summary` — the ``summary`` of the ``run_succeeded`` event.

Each step is idempotent for its day: running it again gives the same rows and the same files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from entity_etl.nps.aggregate import DayFigures, aggregate_day
from entity_etl.nps.report_table import (
    COLUMNS,
    ReportTableError,
    ensure_table,
    read_day_rows,
    read_trend,
    replace_day,
)
from entity_etl.nps.settings import NpsSettings
from entity_etl.runtime.connections import ConnectionResolver, resolve_connection
from entity_etl.runtime.databases import Database, DatabaseError, open_database
from entity_etl.runtime.object_store import ObjectStore, open_object_store

log = logging.getLogger(__name__)

DayReader = Callable[..., Iterable[Mapping[str, Any]]]
#: ``conn_id`` -> an unconnected :class:`Database` (on Airflow: ``orchestration.db_hooks.open_airflow_database``).
DatabaseOpener = Callable[[str], Database]


class NpsJobError(RuntimeError):
    """A step of the day failed; the message names the day and what to fix (never a credential)."""


def day_of_interval(start: dt.datetime | None, end: dt.datetime | None, *, timezone: str) -> dt.date:
    """The survey day of the data interval ``[start, end)``: exactly one local day in ``timezone``."""
    if start is None or end is None:
        raise NpsJobError("the run has no data interval: the DAG's timetable must be a CronDataIntervalTimetable")
    tz = zoneinfo.ZoneInfo(timezone)
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    midnight = dt.time(0, 0)
    if (
        local_start.time() != midnight
        or local_end.time() != midnight
        or local_end.date() != local_start.date() + dt.timedelta(days=1)
    ):
        raise NpsJobError(
            f"the data interval [{start.isoformat()}, {end.isoformat()}) is not one whole day in {timezone} "
            f"(local {local_start.isoformat()} to {local_end.isoformat()}): the timetable must run daily at "
            f"midnight in SURVEY_TIMEZONE, and the scheduler and the workers must agree on SURVEY_TIMEZONE"
        )
    return local_start.date()


def lambda_iter_day() -> DayReader:
    """``iter_day`` of :mod:`entity_etl.survey_reader` (the survey Lambdas' ``survey.responses``),
    imported when a day is read (never at parse time: it imports boto3)."""
    from entity_etl.survey_reader import iter_day

    return iter_day


def _read_error(day: dt.date, table: str, exc: Exception) -> NpsJobError:
    error = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
    detail = f"{error.get('Code')}: {error.get('Message')}" if error else f"{type(exc).__name__}: {exc}"
    return NpsJobError(
        f"{day}: cannot read the answers from DynamoDB table {table!r} (index SurveyDateIndex): {detail}"
    )


def _named_errors(answers: Iterable[Mapping[str, Any]], day: dt.date, table: str) -> Iterator[Mapping[str, Any]]:
    try:
        yield from answers
    except Exception as exc:  # the reader's own errors only: the consumer's are raised where it is
        raise _read_error(day, table, exc) from None


def read_answers(
    *, day: dt.date, table: str, client: Any = None, reader: DayReader | None = None
) -> Iterator[Mapping[str, Any]]:
    """The day's answers as they are read (``iter_day`` by default; ``reader`` may return any iterable).

    A failure of the read, when it starts or on any later page, is an :class:`NpsJobError` that names
    the day and the table.
    """
    read = reader or lambda_iter_day()
    try:
        answers = read(table, day, client=client)
    except Exception as exc:
        raise _read_error(day, table, exc) from None
    return _named_errors(answers, day, table)


def _open_reporting_db(
    day: dt.date, settings: NpsSettings, resolver: ConnectionResolver, opener: DatabaseOpener | None
) -> Database:
    conn_id = settings.reporting_conn_id
    try:
        db = opener(conn_id) if opener is not None else open_database(resolver(conn_id))
    except DatabaseError as exc:
        raise NpsJobError(f"{day}: {exc}") from None
    except Exception as exc:
        raise NpsJobError(
            f"{day}: the reporting connection {conn_id!r} cannot be resolved: {exc} "
            "(define it in Airflow, or as AIRFLOW_CONN_<ID>; NPS_REPORTING_CONN_ID names it)"
        ) from None
    try:
        db.connect()
    except DatabaseError as exc:
        raise NpsJobError(f"{day}: {exc}") from None
    return db


def figures_summary(figures: DayFigures) -> dict[str, Any]:
    c = figures.overall
    return {
        "day": figures.day.isoformat(),
        "responses": c.responses,
        "promoters": c.promoters,
        "passives": c.passives,
        "detractors": c.detractors,
        "satisfied": c.satisfied,
        "nps": None if c.nps is None else float(c.nps),
        "csat_pct": None if c.csat_pct is None else float(c.csat_pct),
        "queues": len(figures.queues),
        "agents": len(figures.agents),
        "rating_scale": figures.scale.describe(),
    }


def compute_day(
    *,
    day: dt.date,
    settings: NpsSettings,
    timezone: str,
    resolver: ConnectionResolver = resolve_connection,
    opener: DatabaseOpener | None = None,
    client: Any = None,
    reader: DayReader | None = None,
) -> dict[str, Any]:
    """Read, count and store the day; return its overall figures (JSON-serialisable, for XCom).

    The reporting database is ``opener(conn_id)`` when given, else ``resolver``'s connection opened
    by the runtime."""
    answers = read_answers(day=day, table=settings.responses_table, client=client, reader=reader)
    figures = aggregate_day(answers, day=day, scale=settings.scale)  # page by page: the day is never held
    summary = figures_summary(figures)
    log.info(
        "%s: %d answers, NPS %s, CSAT %s%%, %d queues, %d agents (scale %s)",
        day,
        summary["responses"],
        summary["nps"],
        summary["csat_pct"],
        summary["queues"],
        summary["agents"],
        summary["rating_scale"],
    )
    db = _open_reporting_db(day, settings, resolver, opener)
    try:
        ensure_table(db, settings.report_table)
        rows = replace_day(db, table=settings.report_table, figures=figures, timezone=timezone)
    except ReportTableError as exc:
        message = str(exc)
        raise NpsJobError(message if message.startswith(str(day)) else f"{day}: {message}") from None
    finally:
        db.close()
    log.info("%s: replaced the day's rows in %s on %s: %d rows", day, settings.report_table, db.info.describe(), rows)
    return {**summary, "rows": rows, "table": settings.report_table, "timezone": timezone}


def figures_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """The reporting table's rows of a day as CSV (UTF-8, header, ``\\n``; empty field for NULL)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else str(row[c]) for c in COLUMNS])
    return buffer.getvalue().encode("utf-8")


def object_keys(*, day: dt.date, prefix: str, trend_days: int) -> dict[str, str]:
    base = f"{prefix}/day={day.isoformat()}" if prefix else f"day={day.isoformat()}"
    return {
        "csv": f"{base}/nps-{day.isoformat()}.csv",
        "chart": f"{base}/nps-trend-{trend_days}d-{day.isoformat()}.png",
    }


def publish_day(
    *,
    day: dt.date,
    settings: NpsSettings,
    resolver: ConnectionResolver = resolve_connection,
    opener: DatabaseOpener | None = None,
    store: ObjectStore | None = None,
) -> dict[str, str]:
    """Write the day's CSV and trend chart from what the reporting table holds; return their URIs."""
    from entity_etl.nps.chart import render_trend_png

    db = _open_reporting_db(day, settings, resolver, opener)
    try:
        rows = read_day_rows(db, table=settings.report_table, day=day)
        trend = read_trend(db, table=settings.report_table, end_day=day, days=settings.trend_days)
    finally:
        db.close()
    if not rows:
        raise NpsJobError(
            f"{day}: the reporting table {settings.report_table} has no rows for the day: compute it first"
        )
    png = render_trend_png(trend, end_day=day, days=settings.trend_days, scale=settings.scale)
    keys = object_keys(day=day, prefix=settings.object_prefix, trend_days=settings.trend_days)
    store = store or open_object_store(settings.object_store_url)
    try:
        uris = {
            "csv": store.put_bytes(keys["csv"], figures_csv(rows)),
            "chart": store.put_bytes(keys["chart"], png),
        }
    except Exception as exc:
        raise NpsJobError(
            f"{day}: cannot write the CSV and the chart to {store.url}: {type(exc).__name__}: {exc}"
        ) from None
    log.info("%s: wrote %s and %s (%d trend days with figures)", day, uris["csv"], uris["chart"], len(trend))
    return uris


def notification_summary(day_summary: Mapping[str, Any], files: Mapping[str, str]) -> dict[str, Any]:
    """The ``summary`` of the ``run_succeeded`` event: ``row_counts`` (shown by the Teams card) and ``report``."""
    report = {
        k: day_summary.get(k)
        for k in (
            "day",
            "timezone",
            "responses",
            "promoters",
            "passives",
            "detractors",
            "satisfied",
            "nps",
            "csat_pct",
            "queues",
            "agents",
            "rating_scale",
            "table",
        )
    }
    report["csv"] = files.get("csv")
    report["chart"] = files.get("chart")
    return {"row_counts": {"responses": day_summary.get("responses")}, "report": report}
