"""The reporting table: one row per day and dimension (overall, each queue, each agent).

A day is written with :func:`replace_day`, in one transaction: delete the day's rows, insert its new
rows, commit. So a rerun or a backfill of a day replaces exactly that day's rows (a queue or an agent
that no longer appears in the answers disappears too), other days are never touched, and a reader
sees the old rows or the new ones, never a mix. It is the per-day upsert the DAG needs.

MySQL/MariaDB (``utf8mb4_bin``, as the entity tables) and SQLite, through
:mod:`entity_etl.runtime.databases`; the connection is resolved by ``conn_id``.

=================  ===================  ===========================================================
column             MySQL type
=================  ===================  ===========================================================
report_date        DATE                 the survey day (in ``timezone``); key
dimension          VARCHAR(16)          ``overall``, ``queue`` or ``agent``; key
dimension_key      VARCHAR(255)         the queue or agent name, ``''`` for overall; key
responses          INT                  answers counted
promoters          INT
passives           INT
detractors         INT
satisfied          INT                  answers in the scale's csat ratings (top-2-box)
nps                DECIMAL(5,2) NULL    % promoters - % detractors; NULL without answers
csat_pct           DECIMAL(5,2) NULL    % satisfied; NULL without answers
rating_scale       VARCHAR(255)         the mapping used (``promoter=5;passive=4;detractor=1-3;csat=4-5``)
timezone           VARCHAR(64)          the zone of the survey day
=================  ===================  ===========================================================

A day without answers still gets its ``overall`` row (0 answers, NULL NPS and CSAT), so "no answers"
and "not computed" differ.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from entity_etl.config.identifiers import check_table_name
from entity_etl.nps.aggregate import DIMENSIONS, DayFigures
from entity_etl.runtime.databases import Database, DatabaseError

COLUMNS = (
    "report_date",
    "dimension",
    "dimension_key",
    "responses",
    "promoters",
    "passives",
    "detractors",
    "satisfied",
    "nps",
    "csat_pct",
    "rating_scale",
    "timezone",
)
KEY = ("report_date", "dimension", "dimension_key")
MAX_KEY_CHARS = 255
MAX_SCALE_CHARS = 255
INSERT_BATCH_ROWS = 500
_MYSQL_TYPES = {
    "report_date": "DATE NOT NULL",
    "dimension": "VARCHAR(16) NOT NULL",
    "dimension_key": f"VARCHAR({MAX_KEY_CHARS}) NOT NULL",
    "responses": "INT NOT NULL",
    "promoters": "INT NOT NULL",
    "passives": "INT NOT NULL",
    "detractors": "INT NOT NULL",
    "satisfied": "INT NOT NULL",
    "nps": "DECIMAL(5,2) NULL",
    "csat_pct": "DECIMAL(5,2) NULL",
    "rating_scale": f"VARCHAR({MAX_SCALE_CHARS}) NOT NULL",
    "timezone": "VARCHAR(64) NOT NULL",
}
_SQLITE_TYPES = {
    name: ("INTEGER NOT NULL" if "INT" in sql else "TEXT" + (" NOT NULL" if "NOT NULL" in sql else ""))
    for name, sql in _MYSQL_TYPES.items()
}


class ReportTableError(RuntimeError):
    """A failure writing or reading the reporting table; the message names the day and the table."""


@dataclass(frozen=True)
class TrendPoint:
    day: dt.date
    responses: int
    nps: Decimal | None
    csat_pct: Decimal | None


def create_table_sql(db: Database, table: str) -> str:
    check_table_name(table)
    types = _MYSQL_TYPES if db.dialect == "mysql" else _SQLITE_TYPES
    columns = ", ".join(f"{db.quote(c)} {types[c]}" for c in COLUMNS)
    key = ", ".join(db.quote(c) for c in KEY)
    return f"CREATE TABLE IF NOT EXISTS {db.table(table)} ({columns}, PRIMARY KEY ({key})){db.table_options()}"


def ensure_table(db: Database, table: str) -> None:
    """Create the table if it does not exist (MySQL commits DDL at once, so this runs on its own)."""
    try:
        db.execute(create_table_sql(db, table))
        db.commit()
    except DatabaseError as exc:
        db.rollback()
        raise ReportTableError(f"cannot create the reporting table {table}: {exc}") from None


def _row_values(figures: DayFigures, timezone: str) -> list[list[Any]]:
    scale = figures.scale.describe()
    if len(scale) > MAX_SCALE_CHARS:
        raise ReportTableError(f"{figures.day}: the rating scale {scale!r} is longer than {MAX_SCALE_CHARS} characters")
    rows = []
    for row in figures.rows():
        if len(row.key) > MAX_KEY_CHARS:
            raise ReportTableError(
                f"{figures.day}: {row.dimension} name {row.key[:60]!r}... is longer than {MAX_KEY_CHARS} characters"
            )
        c = row.counts
        rows.append(
            [
                figures.day.isoformat(),
                row.dimension,
                row.key,
                c.responses,
                c.promoters,
                c.passives,
                c.detractors,
                c.satisfied,
                None if c.nps is None else str(c.nps),
                None if c.csat_pct is None else str(c.csat_pct),
                scale,
                timezone,
            ]
        )
    return rows


def replace_day(db: Database, *, table: str, figures: DayFigures, timezone: str) -> int:
    """Replace the day's rows with ``figures`` in one transaction; return the rows written.

    The table must exist (:func:`ensure_table`). On any error the transaction is rolled back and the
    day keeps its previous rows.
    """
    check_table_name(table)
    values = _row_values(figures, timezone)
    ph = db.placeholder()
    cols = ", ".join(db.quote(c) for c in COLUMNS)
    one_row = "(" + ", ".join([ph] * len(COLUMNS)) + ")"
    try:
        db.execute(f"DELETE FROM {db.table(table)} WHERE {db.quote('report_date')} = {ph}", [figures.day.isoformat()])
        for start in range(0, len(values), INSERT_BATCH_ROWS):
            batch = values[start : start + INSERT_BATCH_ROWS]
            sql = f"INSERT INTO {db.table(table)} ({cols}) VALUES " + ", ".join([one_row] * len(batch))
            db.execute(sql, [v for row in batch for v in row])
        db.commit()
    except DatabaseError as exc:
        db.rollback()
        raise ReportTableError(f"{figures.day}: cannot replace the day's rows in {table}: {exc}") from None
    return len(values)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


def _normalise(record: Sequence[Any]) -> dict[str, Any]:
    row = dict(zip(COLUMNS, record, strict=True))
    row["report_date"] = _date(row["report_date"])
    for name in ("responses", "promoters", "passives", "detractors", "satisfied"):
        row[name] = int(row[name])
    row["nps"] = _decimal(row["nps"])
    row["csat_pct"] = _decimal(row["csat_pct"])
    return row


def read_day_rows(db: Database, *, table: str, day: dt.date) -> list[dict[str, Any]]:
    """The day's rows, overall first, then queues, then agents, each by name."""
    check_table_name(table)
    cols = ", ".join(db.quote(c) for c in COLUMNS)
    try:
        records = db.query(
            f"SELECT {cols} FROM {db.table(table)} WHERE {db.quote('report_date')} = {db.placeholder()}",
            [day.isoformat()],
        )
        db.rollback()  # end the read transaction (MySQL: autocommit is off)
    except DatabaseError as exc:
        db.rollback()
        raise ReportTableError(f"{day}: cannot read the day's rows from {table}: {exc}") from None
    rows = [_normalise(r) for r in records]
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    rows.sort(key=lambda r: (order.get(r["dimension"], len(order)), r["dimension"], r["dimension_key"]))
    return rows


def read_trend(db: Database, *, table: str, end_day: dt.date, days: int) -> list[TrendPoint]:
    """The overall figures of the ``days`` days ending at ``end_day`` (days without a row are absent)."""
    check_table_name(table)
    start = end_day - dt.timedelta(days=days - 1)
    ph = db.placeholder()
    q = db.quote
    try:
        records = db.query(
            f"SELECT {q('report_date')}, {q('responses')}, {q('nps')}, {q('csat_pct')} FROM {db.table(table)} "
            f"WHERE {q('dimension')} = {ph} AND {q('report_date')} >= {ph} AND {q('report_date')} <= {ph} "
            f"ORDER BY {q('report_date')}",
            ["overall", start.isoformat(), end_day.isoformat()],
        )
        db.rollback()
    except DatabaseError as exc:
        db.rollback()
        raise ReportTableError(f"{end_day}: cannot read the {days}-day trend from {table}: {exc}") from None
    return [TrendPoint(_date(d), int(n), _decimal(nps), _decimal(csat)) for d, n, nps, csat in records]
