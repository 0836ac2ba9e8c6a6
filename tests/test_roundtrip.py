"""Odd values through every stage (extract, load_staging, dedupe, load_target), exactly, on SQLite and on a
real MariaDB server: the staging table and the target table hold what the source holds, value for value."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from support.entity_files import make_include, write_entity
from support.odd_values import ODD_TEXT
from support.pipeline import context, run_all
from support.servers import MariaDB

ENTITY = """\
entity: odd
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: odd_src, extract_sql: odd/extract.sql, chunk_rows: 1000}
staging: {table: stg_odd}
target: {conn_id: odd_tgt, table: t_odd}
columns:
  - {name: id, type: integer}
  - {name: txt, type: text}
  - {name: short_txt, type: string(200)}
  - {name: amount, type: "decimal(18,4)"}
  - {name: changed_at, type: datetime}
dedupe: {key: [id], keep: first}
"""
SQL = "SELECT id, txt, short_txt, amount, changed_at FROM src WHERE changed_at >= :data_interval_start ORDER BY id"


def _rows() -> list[tuple[object, ...]]:
    # Repeat the odd values so they span several extract parts (chunk_rows: 1000).
    rows = []
    for i in range(3000):
        v = ODD_TEXT[i % len(ODD_TEXT)]
        amount = None if i % 7 == 0 else f"{i * 3}.{i % 10000:04d}"
        rows.append((i, v, v, amount, "2026-01-01 10:00:00"))
    return rows


def test_odd_values_round_trip_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = make_include(tmp_path)
    write_entity(include, "odd", ENTITY, SQL)
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id INTEGER, txt TEXT, short_txt TEXT, amount TEXT, changed_at TEXT)")
        conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?, ?)", _rows())
    monkeypatch.setenv("AIRFLOW_CONN_ODD_SRC", json.dumps({"conn_type": "sqlite", "host": str(src)}))
    monkeypatch.setenv("AIRFLOW_CONN_ODD_TGT", json.dumps({"conn_type": "sqlite", "host": str(tgt)}))

    stats = run_all(context(include, "odd", tmp_path / "store"))

    assert stats["extract"].details["parts"] == 3
    assert stats["dedupe"].duplicates_removed == 0 and stats["load_target"].rows_out == 3000
    with sqlite3.connect(tgt) as conn:
        staged = conn.execute("SELECT id, txt, short_txt, amount, changed_at FROM stg_odd ORDER BY id").fetchall()
        loaded = conn.execute("SELECT id, txt, short_txt, amount, changed_at FROM t_odd ORDER BY id").fetchall()
    assert staged == _rows()
    assert loaded == _rows()


@pytest.mark.mariadb
def test_odd_values_round_trip_on_mariadb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb: MariaDB, mariadb_db: str
) -> None:
    include = make_include(tmp_path)
    write_entity(include, "odd", ENTITY, SQL)
    conn = mariadb.connect(mariadb_db)
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE src (id INT PRIMARY KEY, txt MEDIUMTEXT, short_txt VARCHAR(200), amount DECIMAL(18,4), "
        "changed_at DATETIME) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    cur.executemany("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", _rows())
    conn.commit()
    monkeypatch.setenv("AIRFLOW_CONN_ODD_SRC", mariadb.conn_json(mariadb_db))
    monkeypatch.setenv("AIRFLOW_CONN_ODD_TGT", mariadb.conn_json(mariadb_db))

    run_all(context(include, "odd", tmp_path / "store"))

    cur.execute("SELECT id, txt, short_txt, amount, changed_at FROM src ORDER BY id")
    source = cur.fetchall()
    cur.execute("SELECT id, txt, short_txt, amount, changed_at FROM stg_odd ORDER BY id")
    staged = cur.fetchall()
    cur.execute("SELECT id, txt, short_txt, amount, changed_at FROM t_odd ORDER BY id")
    loaded = cur.fetchall()
    conn.close()
    assert len(staged) == 3000
    assert staged == source
    assert loaded == source
    # NULL, '' and 'NULL' stayed three different things.
    texts = {row[1] for row in staged[: len(ODD_TEXT)]}
    assert {None, "", "NULL", "\\N"} <= texts
