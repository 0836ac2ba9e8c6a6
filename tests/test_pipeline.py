"""Whole entity runs on the embedded default (SQLite) and on MariaDB: dedupe, translate, sanitize,
interval filtering, statistics, idempotent reruns, and bad input that never half-writes the target."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import pytest

from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.pipeline import END, START, context, etlctl_run_stage, run_all
from support.servers import MariaDB, free_port

ENTITY = """\
entity: acme
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: acme_src, extract_sql: acme/extract.sql, chunk_rows: 1000}
staging: {table: stg_acme}
target: {conn_id: acme_tgt, table: acme_company}
columns:
  - {name: id, type: string(20), target: company_id}
  - {name: name, type: string(100), target: company_name, sanitize: [trim]}
  - {name: sector, type: string(100), sanitize: [trim, null_if_empty]}
  - {name: changed_at, type: datetime, target: updated_at}
dedupe: {key: [id], keep: newest, order_by: changed_at}
translate: {enabled: true, columns: [sector], source_language: de}
"""
SQL = (
    "SELECT id, name, sector, changed_at FROM src "
    "WHERE changed_at >= :data_interval_start AND changed_at < :data_interval_end"
)
SECTORS = ["Maschinenbau", "Einzelhandel", " Baugewerbe ", "", None, "Unbekannt"]
ENGLISH = {"Maschinenbau": "Mechanical engineering", "Einzelhandel": "Retail", "Baugewerbe": "Construction"}


def source_rows() -> list[tuple[str, str, str | None, str]]:
    rows = []
    for i in range(2500):
        ts = START + dt.timedelta(seconds=30 * i)
        rows.append((f"C{i % 2000:05d}", f"  Name {i} ", SECTORS[i % len(SECTORS)], ts.strftime("%Y-%m-%d %H:%M:%S")))
    # outside the interval: must not be extracted
    rows.append(("C99999", "too late", "Maschinenbau", END.strftime("%Y-%m-%d %H:%M:%S")))
    rows.append(
        ("C99998", "too early", "Maschinenbau", (START - dt.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S"))
    )
    return rows


def newest_in_interval() -> dict[str, tuple[str, str, str | None, str]]:
    """The newest source row per id within the run's interval, computed apart from the pipeline."""
    newest: dict[str, tuple[str, str, str | None, str]] = {}
    for row in source_rows():
        if not (START.strftime("%Y-%m-%d %H:%M:%S") <= row[3] < END.strftime("%Y-%m-%d %H:%M:%S")):
            continue
        if row[0] not in newest or row[3] > newest[row[0]][3]:
            newest[row[0]] = row
    return newest


def expected_target() -> dict[str, tuple[str, str | None, str]]:
    """The target computed independently of the pipeline: newest per id, translated, sanitized."""
    out = {}
    for key, (_, name, sector, ts) in newest_in_interval().items():
        translated = ENGLISH.get(sector.strip(), sector) if sector and sector.strip() in ENGLISH else sector
        if sector == " Baugewerbe ":
            translated = " Baugewerbe "  # the glossary knows "Baugewerbe", not " Baugewerbe "
        clean = translated.strip() if translated is not None else None
        out[key] = (name.strip(), clean or None, ts)
    return out


@pytest.fixture
def include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    include = make_include(tmp_path)
    write_entity(include, "acme", ENTITY, SQL)
    glossary = include / "glossary.yaml"
    glossary.write_text(json.dumps({"de": ENGLISH}))
    monkeypatch.setenv("ETL_GLOSSARY", str(glossary))
    monkeypatch.setenv("ETL_TRANSLATOR", "glossary")
    return include


@pytest.fixture
def sqlite_dbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, name TEXT, sector TEXT, changed_at TEXT)")
        conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", source_rows())
    monkeypatch.setenv("AIRFLOW_CONN_ACME_SRC", json.dumps({"conn_type": "sqlite", "host": str(src)}))
    monkeypatch.setenv("AIRFLOW_CONN_ACME_TGT", json.dumps({"conn_type": "sqlite", "host": str(tgt)}))
    return src, tgt


def sqlite_target(tgt: Path) -> dict[str, tuple[str, str | None, str]]:
    with sqlite3.connect(tgt) as conn:
        rows = conn.execute("SELECT company_id, company_name, sector, updated_at FROM acme_company").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_full_run_on_sqlite(include: Path, sqlite_dbs: tuple[Path, Path], tmp_path: Path) -> None:
    stats = run_all(context(include, "acme", tmp_path / "store"))
    expected = expected_target()
    assert sqlite_target(sqlite_dbs[1]) == expected
    assert stats["extract"].rows_out == 2500  # the two rows outside the interval were left out
    assert stats["load_staging"].rows_out == 2500
    assert stats["dedupe"].duplicates_removed == 500
    assert stats["dedupe"].rows_out == len(expected) == 2000
    assert stats["load_target"].rows_out == 2000
    assert stats["translate"].details["translator"].startswith("offline glossary")
    assert stats["translate"].details["translated"] == 2  # "Maschinenbau", "Einzelhandel"
    assert stats["translate"].details["untranslated"] == 3  # " Baugewerbe ", "", "Unbekannt"
    assert all(s.duration_s >= 0 and s.started_at <= s.finished_at for s in stats.values())
    assert stats["extract"].bytes > 0


def test_upper_and_lower_sanitizers_on_sqlite(sqlite_dbs: tuple[Path, Path], tmp_path: Path) -> None:
    """``upper`` and ``lower`` (each after ``trim`` or before it) reach the target; ASCII values, since
    SQLite's UPPER/LOWER change ASCII letters only."""
    include = make_include(tmp_path)
    entity = (
        ENTITY.replace("sanitize: [trim]}", "sanitize: [trim, upper]}")
        .replace("sanitize: [trim, null_if_empty]}", "sanitize: [lower, trim]}")
        .replace("translate: {enabled: true, columns: [sector], source_language: de}\n", "")
    )
    write_entity(include, "acme", entity, SQL)
    run_all(context(include, "acme", tmp_path / "store"))
    expected = {
        key: (name.strip().upper(), None if sector is None else sector.lower().strip(), ts)
        for key, (_, name, sector, ts) in newest_in_interval().items()
    }
    assert sqlite_target(sqlite_dbs[1]) == expected
    assert {v[1] for v in expected.values()} == {"maschinenbau", "einzelhandel", "baugewerbe", "", None, "unbekannt"}


def test_every_stage_rerun_is_idempotent(include: Path, sqlite_dbs: tuple[Path, Path], tmp_path: Path) -> None:
    ctx = context(include, "acme", tmp_path / "store")
    run_all(ctx)
    first = sqlite_target(sqlite_dbs[1])
    for stage in ctx.config.stages[1:]:  # every stage again, in order, twice each
        run_stage(ctx, stage)
        again = run_stage(ctx, stage)
        if stage == "translate":
            assert again.details.get("rerun") == "no-op"
    assert sqlite_target(sqlite_dbs[1]) == first
    # And the whole run again, cleanup included.
    run_all(ctx)
    assert sqlite_target(sqlite_dbs[1]) == first == expected_target()


def test_translation_cache_means_each_value_is_translated_once(
    include: Path, sqlite_dbs: tuple[Path, Path], tmp_path: Path
) -> None:
    run_all(context(include, "acme", tmp_path / "store", run_id="r1"))
    second = run_all(context(include, "acme", tmp_path / "store", run_id="r2"))
    assert second["translate"].details["cache_hits"] == 5
    assert second["translate"].details["translated"] + second["translate"].details["untranslated"] == 0


def test_failing_source_query_names_entity_and_writes_nothing(
    include: Path, sqlite_dbs: tuple[Path, Path], tmp_path: Path
) -> None:
    (include / "sql" / "acme" / "extract.sql").write_text("SELECT id, name FROM no_such_table")
    ctx = context(include, "acme", tmp_path / "store")
    run_stage(ctx, "cleanup")
    with pytest.raises(StageError, match=r"^acme: extract: .*source query failed: no such table: no_such_table"):
        run_stage(ctx, "extract")
    assert ctx.store.list(ctx.extract_prefix) == []
    with pytest.raises(StageError, match=r"^acme: no finished extract for run"):
        run_stage(ctx, "load_staging")
    with sqlite3.connect(sqlite_dbs[1]) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'acme_company'").fetchall() == []


def test_query_columns_must_match_config(include: Path, sqlite_dbs: tuple[Path, Path], tmp_path: Path) -> None:
    (include / "sql" / "acme" / "extract.sql").write_text("SELECT id, name, changed_at AS changed FROM src")
    with pytest.raises(
        StageError,
        match=r"acme: extract: query columns .* missing \['sector', 'changed_at'\]; unexpected \['changed'\]",
    ):
        run_stage(context(include, "acme", tmp_path / "store"), "extract")


def test_null_business_key_refuses_the_target_load(
    include: Path, sqlite_dbs: tuple[Path, Path], tmp_path: Path
) -> None:
    with sqlite3.connect(sqlite_dbs[0]) as conn:
        conn.execute(
            "INSERT INTO src VALUES (NULL, 'no id', NULL, ?)",
            ((START + dt.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),),
        )
    ctx = context(include, "acme", tmp_path / "store")
    with pytest.raises(
        StageError, match=r"acme: load_target: 1 staged rows have a NULL in the key \['id'\]; nothing was written"
    ):
        run_all(ctx)
    assert sqlite_target(sqlite_dbs[1]) == {}


def test_unreachable_mysql_is_one_clear_line(include: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_ACME_SRC", f"mysql://etl:s3cret-pw@127.0.0.1:{port}/src?connect_timeout=2")
    monkeypatch.setenv("AIRFLOW_CONN_ACME_TGT", f"mysql://etl:s3cret-pw@127.0.0.1:{port}/tgt?connect_timeout=2")
    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    proc = etlctl_run_stage("acme", "extract", tmp_path / "store", force=True)  # the extract alone
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"etlctl: error: acme: extract: cannot connect to acme_src (mysql 127.0.0.1:{port}/src)")
    assert "s3cret-pw" not in proc.stderr + proc.stdout


def test_missing_connection_is_named(include: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_ACME_SRC", raising=False)
    with pytest.raises(
        StageError, match=r"acme: extract: connection 'acme_src' is not defined: set AIRFLOW_CONN_ACME_SRC"
    ):
        run_stage(context(include, "acme", tmp_path / "store"), "extract")


@pytest.mark.mariadb
def test_full_run_and_rerun_on_mariadb(
    include: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb: MariaDB, mariadb_db: str
) -> None:
    conn = mariadb.connect(mariadb_db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE src (id VARCHAR(20), name VARCHAR(100), sector VARCHAR(100), changed_at DATETIME)")
    cur.executemany("INSERT INTO src VALUES (%s, %s, %s, %s)", source_rows())
    conn.commit()
    monkeypatch.setenv("AIRFLOW_CONN_ACME_SRC", mariadb.conn_json(mariadb_db))
    monkeypatch.setenv("AIRFLOW_CONN_ACME_TGT", mariadb.conn_json(mariadb_db))
    ctx = context(include, "acme", tmp_path / "store")

    def target() -> dict[str, tuple[str, str | None, str]]:
        cur.execute("SELECT company_id, company_name, sector, updated_at FROM acme_company")
        conn.commit()
        return {r[0]: (r[1], r[2], r[3].strftime("%Y-%m-%d %H:%M:%S")) for r in cur.fetchall()}

    stats = run_all(ctx)
    assert stats["dedupe"].duplicates_removed == 500
    assert target() == expected_target()
    run_all(ctx)
    for stage in ctx.config.stages[1:]:
        run_stage(ctx, stage)
    assert target() == expected_target()
    conn.close()


@pytest.mark.mariadb
def test_failing_source_query_on_mariadb_is_one_line_and_writes_nothing(
    include: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb: MariaDB, mariadb_db: str
) -> None:
    # A multi-line query with a typo: MariaDB's message quotes the query text, newlines and all.
    (include / "sql" / "acme" / "extract.sql").write_text(
        "SELECT id, name, sector, changed_at\nFROM src\nWHERE changed_at >=>= :data_interval_start\n  AND changed_at < :data_interval_end\n",
        encoding="utf-8",
    )
    conn = mariadb.connect(mariadb_db)
    conn.cursor().execute(
        "CREATE TABLE src (id VARCHAR(20), name VARCHAR(100), sector VARCHAR(100), changed_at DATETIME)"
    )
    conn.commit()
    monkeypatch.setenv("AIRFLOW_CONN_ACME_SRC", mariadb.conn_json(mariadb_db))
    monkeypatch.setenv("AIRFLOW_CONN_ACME_TGT", mariadb.conn_json(mariadb_db))
    ctx = context(include, "acme", tmp_path / "store")
    run_stage(ctx, "cleanup")
    with pytest.raises(StageError) as raised:
        run_stage(ctx, "extract")
    message = str(raised.value)
    assert re.match(r"^acme: extract: acme_src: source query failed: You have an error in your SQL syntax", message)
    assert "\n" not in message and "\r" not in message
    assert "near '>= '" in message and "AND changed_at <" in message  # the quoted query, on the same line
    assert ctx.store.list(ctx.extract_prefix) == []
    cur = conn.cursor()
    cur.execute("SHOW TABLES LIKE 'acme_company'")
    assert cur.fetchall() == ()  # the target was never created, let alone written
    conn.close()
