"""The ``kv`` test entity on SQLite or MariaDB (tests/support/servers.py): the source and target database, the
entity file and a run of every stage; shared by the target-safety and staging-ledger tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .entity_files import make_include, write_entity
from .pipeline import context, run_all
from .scratch_db import ScratchDb
from .servers import MariaDB

DAY_A = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY_B = DAY_A + dt.timedelta(days=1)
DAY_C = DAY_B + dt.timedelta(days=1)

ENTITY = """\
entity: kv
schedule: "@daily"
start_date: 2026-01-01
source: {{conn_id: kv_src, extract_sql: kv/extract.sql, chunk_rows: 1000}}
staging: {{table: stg_kv}}
target: {{conn_id: kv_tgt, table: kv_company, chunk_rows: 1000}}
columns:
  - {{name: id, type: string(20), target: company_id}}
  - {{name: val, type: string(50), target: label}}
  - {{name: v, type: integer, target: version}}
  - {{name: sector, type: string(50)}}
  - {{name: sector2, type: string(50)}}
dedupe: {{key: [id], keep: {keep}, order_by: v}}
translate: {{enabled: {translate}, columns: [sector, sector2], source_language: de}}
"""
SQL = "SELECT id, val, v, sector, sector2 FROM src WHERE ts >= :data_interval_start AND ts < :data_interval_end"

Row = tuple[str, str, int | None, str | None, str | None, str]  # id, val, v, sector, sector2, ts


class Backend(ScratchDb):
    """One target database (also the source): SQLite file or a fresh MariaDB database."""

    def __init__(self, kind: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, mariadb: Any = None, db: str = ""):
        super().__init__(kind, tmp / "kv.db", mariadb, db)
        monkeypatch.setenv("AIRFLOW_CONN_KV_SRC", self.conn_json())
        monkeypatch.setenv("AIRFLOW_CONN_KV_TGT", self.conn_json())
        collate = " COLLATE utf8mb4_nopad_bin" if kind == "mariadb" else ""
        self.sql(
            f"CREATE TABLE src (id VARCHAR(20){collate}, val VARCHAR(50), v INTEGER, "
            "sector VARCHAR(50), sector2 VARCHAR(50), ts VARCHAR(19))"
        )

    def add_source(self, rows: Sequence[Row]) -> None:
        self.sql("INSERT INTO src VALUES (%s, %s, %s, %s, %s, %s)", rows)

    def target(self) -> dict[str, tuple[Any, ...]]:
        rows = self.sql("SELECT company_id, label, version, sector, sector2 FROM kv_company")
        return {r[0]: tuple(r[1:]) for r in rows}


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    if request.param == "mariadb":
        mariadb: MariaDB = request.getfixturevalue("mariadb")
        yield Backend("mariadb", tmp_path, monkeypatch, mariadb, request.getfixturevalue("mariadb_db"))
    else:
        yield Backend("sqlite", tmp_path, monkeypatch)


def include_for(tmp_path: Path, keep: str = "newest", translate: bool = False) -> Path:
    include = make_include(tmp_path)
    write_entity(include, "kv", ENTITY.format(keep=keep, translate=str(translate).lower()), SQL)
    return include


def ts(day: dt.datetime, minute: int) -> str:
    return (day + dt.timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S")


def run(include: Path, tmp_path: Path, start: dt.datetime, run_id: str, **kw: Any) -> dict[str, Any]:
    ctx = context(include, "kv", tmp_path / "store", run_id=run_id, start=start, end=start + dt.timedelta(days=1))
    return run_all(ctx)
