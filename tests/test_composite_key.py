"""A composite business key (``dedupe.key: [country, id]``) on SQLite and MariaDB.

The same ``id`` in two countries is two keys; a duplicate of one (country, id) pair keeps the newest; keys
whose parts concatenate alike (``('DE', '10')`` and ``('DE1', '0')``) stay apart; the chunk key (the first
key column, ``country``) holds far more rows than a chunk, so every chunk boundary falls inside one value;
and a backfill of an older interval never regresses a newer target row of the same pair.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.entity_files import make_include, write_entity
from support.pipeline import context, run_all
from support.scratch_db import ScratchDb
from support.servers import MariaDB

ENTITY = """\
entity: ck
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: ck_db, extract_sql: ck/extract.sql, chunk_rows: 1000}
staging: {table: stg_ck}
target: {conn_id: ck_db, table: t_ck, chunk_rows: 1000}
columns:
  - {name: country, type: string(8)}
  - {name: id, type: string(20)}
  - {name: val, type: string(50)}
  - {name: v, type: integer}
dedupe: {key: [country, id], keep: newest, order_by: v}
"""
SQL = "SELECT country, id, val, v FROM src WHERE ts >= :data_interval_start AND ts < :data_interval_end"
DAY_A = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY_B = DAY_A + dt.timedelta(days=1)


class Db(ScratchDb):
    def __init__(self, kind: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, mariadb: Any = None, db: str = ""):
        super().__init__(kind, tmp / "ck.db", mariadb, db)
        monkeypatch.setenv("AIRFLOW_CONN_CK_DB", self.conn_json())
        collate = " COLLATE utf8mb4_nopad_bin" if kind == "mariadb" else ""
        self.sql(
            f"CREATE TABLE src (country VARCHAR(8){collate}, id VARCHAR(20){collate}, val VARCHAR(50), "
            "v INTEGER, ts VARCHAR(19))"
        )

    def target(self) -> dict[tuple[str, str], tuple[str, int]]:
        return {(c, i): (val, v) for c, i, val, v in self.sql("SELECT country, id, val, v FROM t_ck")}


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Db]:
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    if request.param == "mariadb":
        mariadb: MariaDB = request.getfixturevalue("mariadb")
        yield Db("mariadb", tmp_path, monkeypatch, mariadb, request.getfixturevalue("mariadb_db"))
    else:
        yield Db("sqlite", tmp_path, monkeypatch)


def _ts(day: dt.datetime, second: int) -> str:
    return (day + dt.timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")


def _run(tmp_path: Path, day: dt.datetime, run_id: str) -> dict[str, Any]:
    include = make_include(tmp_path / run_id)
    write_entity(include, "ck", ENTITY, SQL)
    ctx = context(include, "ck", tmp_path / "store", run_id=run_id, start=day, end=day + dt.timedelta(days=1))
    return run_all(ctx)


def test_a_composite_key_keeps_the_newest_per_pair_across_chunks_and_runs(db: Db, tmp_path: Path) -> None:
    # Day B (loaded first): 1,500 ids in each of DE and NL, the same ids in both, version 10 + i.
    day_b = [(c, f"{i:04d}", f"{c}-{i} new", 10 + i, _ts(DAY_B, i)) for c in ("DE", "NL") for i in range(1500)]
    # Each DE id again with a lower version in the same interval: dedupe must drop these.
    day_b += [("DE", f"{i:04d}", f"DE-{i} stale", i, _ts(DAY_B, 2000 + i)) for i in range(1500)]
    # Pairs that a concatenated key would merge, and the same pair twice with a tie broken by load order.
    day_b += [("DE", "10", "DE|10", 1, _ts(DAY_B, 4000)), ("DE1", "0", "DE1|0", 1, _ts(DAY_B, 4001))]
    day_b += [("FR", "x", "first", 5, _ts(DAY_B, 4002)), ("FR", "x", "later", 5, _ts(DAY_B, 4003))]
    db.sql("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", day_b)
    stats = _run(tmp_path, DAY_B, "run-b")
    assert stats["dedupe"].duplicates_removed == 1500 + 1
    expected = {(c, f"{i:04d}"): (f"{c}-{i} new", 10 + i) for c in ("DE", "NL") for i in range(1500)}
    expected |= {("DE", "10"): ("DE|10", 1), ("DE1", "0"): ("DE1|0", 1), ("FR", "x"): ("later", 5)}
    assert db.target() == expected

    # A backfill of day A: older versions of the DE pairs, a newer one of NL 0000, and a new pair.
    day_a = [("DE", f"{i:04d}", f"DE-{i} backfill", i, _ts(DAY_A, i)) for i in range(1500)]
    day_a += [("NL", "0000", "NL-0 newest", 99_999, _ts(DAY_A, 3000)), ("NL", "new", "added", 1, _ts(DAY_A, 3001))]
    db.sql("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", day_a)
    stats = _run(tmp_path, DAY_A, "run-a")
    assert stats["load_target"].rows_in == len(day_a)
    expected[("NL", "0000")] = ("NL-0 newest", 99_999)
    expected[("NL", "new")] = ("added", 1)
    assert db.target() == expected  # no DE pair regressed to its older backfilled version
