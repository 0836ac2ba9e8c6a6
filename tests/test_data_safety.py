"""The data-safety suite: each case through ``etlctl run-stage``, as a user runs it, on SQLite and on MariaDB.

Every case asserts the target exactly: its row count and a checksum of every column of every row
(:func:`snapshot`), against the result the documented rule gives. Every bad-input case exits non-zero
with one clear line on stderr and leaves the target as it was (the snapshot before equals the one after).

Sections (append new cases as a section of their own, using :class:`Db`, :func:`run_pipeline`,
:func:`snapshot` and :func:`assert_refused`):

(a) backfills of an older interval after a newer one (``keep: newest`` / ``keep: oldest``);
(b) keys that differ only in trailing spaces, and existing targets the upsert cannot use;
(c) a connection password with ``/ ? # @ :`` in its URI, in no output, record or statistics;
(d) odd characters in the rows, round-tripped exactly;
(e) table identity: a staging table that is the target in any spelling, shared by two files, or not
    the pipeline's own;
(f) the stage chain: staging reloaded after dedupe is refused by load_target;
(h) strict config: loose values refused by ``etlctl validate`` and every stage, naming the field.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from support.entity_files import make_include, write_entity
from support.odd_values import ODD_TEXT
from support.pipeline import etlctl_run_stage
from support.scratch_db import ScratchDb
from support.servers import MariaDB

DAY_A = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY_B = DAY_A + dt.timedelta(days=1)
STAGES = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
TARGET_COLUMNS = ["key_id", "label", "version", "note"]

ENTITY = """\
entity: ds
schedule: "@daily"
start_date: 2026-01-01
source: {{conn_id: ds_src, extract_sql: ds/extract.sql, chunk_rows: 1000}}
staging: {{table: stg_ds}}
target: {{conn_id: ds_tgt, table: ds_target, chunk_rows: 1000}}
columns:
  - {{name: id, type: string(60), target: key_id}}
  - {{name: label, type: text}}
  - {{name: v, type: integer, target: version}}
  - {{name: note, type: string(200)}}
dedupe: {{key: [id], keep: {keep}, order_by: v}}
"""
SQL = "SELECT id, label, v, note FROM src WHERE ts >= :data_interval_start AND ts < :data_interval_end"

Row = tuple[str, str | None, int | None, str | None, str]  # id, label, v, note, ts


# -- the harness ------------------------------------------------------------------------------------
class Db(ScratchDb):
    """One database (source and target): a SQLite file, or a fresh database on the session's MariaDB."""

    def __init__(self, kind: str, tmp: Path, mariadb: MariaDB | None = None, db: str = "") -> None:
        super().__init__(kind, tmp / "ds.db", mariadb, db)

    def create_source(self, rows: Sequence[Row]) -> None:
        # The source's own key column compares byte by byte (NO PAD), as a source with such keys must.
        collate = " COLLATE utf8mb4_nopad_bin" if self.kind == "mariadb" else ""
        self.sql(
            f"CREATE TABLE src (id VARCHAR(60){collate}, label TEXT, v INTEGER, note VARCHAR(200), ts VARCHAR(19))"
        )
        self.sql("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", rows)

    def target_rows(self) -> list[tuple[Any, ...]]:
        exists = (
            self.sql("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'ds_target'")
            if self.kind == "sqlite"
            else self.sql("SHOW TABLES LIKE 'ds_target'")
        )
        return self.sql(f"SELECT {', '.join(TARGET_COLUMNS)} FROM ds_target") if exists else []


def digest(rows: Sequence[Sequence[Any]]) -> tuple[int, str]:
    """(row count, checksum of every column): order-independent, NULL distinct from any string."""
    lines = sorted(json.dumps(["\x00NULL" if v is None else str(v) for v in row]) for row in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def snapshot(db: Db) -> tuple[int, str]:
    return digest(db.target_rows())


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "mariadb":
        yield Db("mariadb", tmp_path, request.getfixturevalue("mariadb"), request.getfixturevalue("mariadb_db"))
    else:
        yield Db("sqlite", tmp_path)


def ts(day: dt.datetime, minute: int) -> str:
    return (day + dt.timedelta(minutes=minute)).strftime("%Y-%m-%d %H:%M:%S")


def stage_env(tmp_path: Path, keep: str = "newest", **conns: str) -> dict[str, str]:
    """This process's environment plus the entity's include folder and its two connections."""
    include = tmp_path / "include"
    if not include.exists():
        make_include(tmp_path)
        write_entity(include, "ds", ENTITY.format(keep=keep), SQL)
    return {**os.environ, "ETL_INCLUDE_DIR": str(include), **{f"AIRFLOW_CONN_{k.upper()}": v for k, v in conns.items()}}


def db_env(tmp_path: Path, db: Db, keep: str = "newest") -> dict[str, str]:
    return stage_env(tmp_path, keep, ds_src=db.conn_json(), ds_tgt=db.conn_json())


def run_pipeline(
    env: dict[str, str], tmp_path: Path, start: dt.datetime, run_id: str, stages: Sequence[str] = STAGES
) -> dict[str, dict[str, Any]]:
    """Each stage as its own ``etlctl run-stage`` process; the statistics each printed on stdout."""
    stats = {}
    for stage in stages:
        proc = etlctl_run_stage(
            "ds", stage, tmp_path / "store", run_id=run_id, start=start, end=start + dt.timedelta(days=1), env=env
        )
        assert proc.returncode == 0, f"{stage}: exit {proc.returncode}\n{proc.stderr}"
        stats[stage] = json.loads(proc.stdout.strip().splitlines()[-1])
    return stats


def assert_refused(
    env: dict[str, str], tmp_path: Path, db: Db, stage: str, pattern: str, run_id: str = "r1"
) -> subprocess.CompletedProcess[str]:
    """The pipeline up to ``stage`` succeeds; ``stage`` exits non-zero with one line matching ``pattern``
    (a regular expression after ``etlctl: error: ``), and the target is exactly as it was before the run."""
    import re

    before = snapshot(db)
    run_pipeline(env, tmp_path, DAY_A, run_id, STAGES[: STAGES.index(stage)])
    proc = etlctl_run_stage("ds", stage, tmp_path / "store", run_id=run_id, start=DAY_A, end=DAY_B, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert re.match(rf"etlctl: error: ds: {stage}: {pattern}", lines[0]), lines[0]
    assert proc.stdout == ""
    assert snapshot(db) == before
    return proc


# -- (a) backfills ----------------------------------------------------------------------------------
# (key, version in interval B, version in interval A); B is loaded first, then A as a backfill.
BACKFILL: list[tuple[str, int | None, int | None]] = [
    ("K1", 5, 3),  # A older
    ("K6", 2, 7),  # A newer
    ("K7", None, 1),  # only in A: inserted
    ("K8", 4, None),  # only in B: untouched
    ("K9", 9, 1),  # A older
]


def backfill_rows() -> list[Row]:
    rows: list[Row] = []
    for i, (key, vb, va) in enumerate(BACKFILL):
        if vb is not None:
            rows.append((key, "from B", vb, f"b{i}", ts(DAY_B, i)))
        if va is not None:
            rows.append((key, "from A", va, f"a{i}", ts(DAY_A, i)))
    return rows


def expected_backfill(keep: str) -> tuple[list[tuple[Any, ...]], int]:
    """The target after B then A by the documented rule (not by the SQL), and how many B rows A kept out."""
    out, kept = [], 0
    for i, (key, vb, va) in enumerate(BACKFILL):
        a_wins = vb is None or (va is not None and (va > vb if keep == "newest" else va < vb))
        kept += va is not None and not a_wins
        out.append((key, "from A", va, f"a{i}") if a_wins else (key, "from B", vb, f"b{i}"))
    return out, kept


@pytest.mark.parametrize("keep", ["newest", "oldest"])
def test_a_backfill_of_an_older_interval_keeps_the_rule(keep: str, db: Db, tmp_path: Path) -> None:
    db.create_source(backfill_rows())
    env = db_env(tmp_path, db, keep)
    first = run_pipeline(env, tmp_path, DAY_B, "rB")
    assert snapshot(db) == digest([(k, "from B", vb, f"b{i}") for i, (k, vb, _) in enumerate(BACKFILL) if vb])
    assert first["load_target"]["details"][f"kept_{'newer' if keep == 'newest' else 'older'}"] == 0

    second = run_pipeline(env, tmp_path, DAY_A, "rA")
    expected, kept = expected_backfill(keep)
    assert kept == (2 if keep == "newest" else 1)  # K1 and K9 newer in B; K6 older in B
    assert snapshot(db) == digest(expected), sorted(db.target_rows())
    assert second["load_target"]["details"][f"kept_{'newer' if keep == 'newest' else 'older'}"] == kept
    assert second["load_target"]["rows_out"] == 4  # every staged row of A was offered to the upsert


# -- (b) keys that differ in spaces; targets the upsert cannot use -------------------------------------
SPACE_KEYS = ["KVK-1", "KVK-1 ", "kvk-1", "", " ", "  "]


def test_keys_that_differ_only_in_trailing_spaces_stay_distinct(db: Db, tmp_path: Path) -> None:
    rows: list[Row] = []
    for i, key in enumerate(SPACE_KEYS):  # two versions of each: dedupe keeps the newer
        rows.append((key, f"old {i}", 1, None, ts(DAY_A, 2 * i)))
        rows.append((key, f"new {i}", 2, f"[{key}]", ts(DAY_A, 2 * i + 1)))
    db.create_source(rows)
    stats = run_pipeline(db_env(tmp_path, db), tmp_path, DAY_A, "r1")
    assert stats["dedupe"]["duplicates_removed"] == len(SPACE_KEYS)
    expected = [(key, f"new {i}", 2, f"[{key}]") for i, key in enumerate(SPACE_KEYS)]
    assert snapshot(db) == digest(expected), sorted(db.target_rows())
    run_pipeline(db_env(tmp_path, db), tmp_path, DAY_A, "r2")  # a second load merges none of them
    assert snapshot(db) == digest(expected)


EXISTING = "label TEXT, version INT, note VARCHAR(200)"


@pytest.mark.mariadb
def test_a_pad_space_key_column_is_refused_and_the_target_untouched(
    tmp_path: Path, mariadb: MariaDB, mariadb_db: str
) -> None:
    db = Db("mariadb", tmp_path, mariadb, mariadb_db)
    db.sql(f"CREATE TABLE ds_target (key_id VARCHAR(60) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, {EXISTING})")
    db.sql("INSERT INTO ds_target VALUES ('KVK-1', 'before', 9, NULL)")
    db.create_source([("KVK-1 ", "x", 1, None, ts(DAY_A, 0)), ("KVK-2", "y", 1, None, ts(DAY_A, 1))])
    proc = assert_refused(
        db_env(tmp_path, db), tmp_path, db, "load_target", r"target table ds_target.* key_id \(utf8mb4_bin\) use a PAD"
    )
    assert "ALTER TABLE ds_target MODIFY key_id varchar(60) COLLATE utf8mb4_nopad_bin NOT NULL" in proc.stderr


def test_a_sqlite_key_column_that_ignores_trailing_spaces_is_refused(tmp_path: Path) -> None:
    db = Db("sqlite", tmp_path)
    db.sql(f"CREATE TABLE ds_target (key_id TEXT COLLATE RTRIM NOT NULL PRIMARY KEY, {EXISTING})")
    db.sql("INSERT INTO ds_target VALUES ('KVK-1', 'before', 9, NULL)")
    db.create_source([("KVK-1 ", "x", 1, None, ts(DAY_A, 0))])
    assert_refused(
        db_env(tmp_path, db), tmp_path, db, "load_target", r"target table ds_target: key columns key_id \(RTRIM\)"
    )


@pytest.mark.parametrize(
    "primary_key", ["PRIMARY KEY (key_id, label)", "PRIMARY KEY (label)", ""], ids=["wider", "other", "none"]
)
def test_a_target_whose_primary_key_is_not_the_dedupe_key_is_refused(primary_key: str, db: Db, tmp_path: Path) -> None:
    text = "VARCHAR(60) COLLATE utf8mb4_nopad_bin" if db.kind == "mariadb" else "TEXT"
    label = "VARCHAR(50)" if db.kind == "mariadb" else "TEXT"
    db.sql(
        f"CREATE TABLE ds_target (key_id {text} NOT NULL, label {label} NOT NULL, version INT, note VARCHAR(200)"
        f"{', ' + primary_key if primary_key else ''})"
    )
    db.sql("INSERT INTO ds_target VALUES ('K1', 'before', 9, NULL)")
    db.create_source([("K1", "x", 10, None, ts(DAY_A, 0))])
    assert_refused(
        db_env(tmp_path, db),
        tmp_path,
        db,
        "load_target",
        r"target table ds_target has the primary key .*not \['key_id'\] .*nothing was written$",
    )


# -- (c) a password with / ? # @ : in the connection URI ----------------------------------------------
PASSWORD = "p/a?s#s@w:rd"


def password_user(mariadb: MariaDB, db: str, password: str = PASSWORD) -> str:
    """A user of ``db`` whose password holds every URI delimiter, and its raw (not percent-encoded) URI."""
    user = f"u{uuid.uuid4().hex[:8]}"
    conn = mariadb.connect()
    cur = conn.cursor()
    cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY %s", (password,))
    cur.execute(f"GRANT ALL ON {db}.* TO '{user}'@'localhost'")
    conn.close()
    return f"mysql://{user}:{password}@localhost:{mariadb.port}/{db}?unix_socket={mariadb.socket}"


def assert_no_password(tmp_path: Path, env: dict[str, str], *outputs: str) -> None:
    """Not in the given outputs, not in ``etlctl runs``, not in the run store, not in any stored statistics."""
    runs = subprocess.run(
        [sys.executable, "-m", "entity_etl.cli", "runs", "--entity", "ds"], capture_output=True, text=True, env=env
    )
    assert runs.returncode == 0 and len(runs.stdout.strip().splitlines()) >= 2, runs.stdout + runs.stderr
    stored = [p.read_bytes().decode("utf-8", "replace") for p in (tmp_path / "store").rglob("*.json")]
    state = Path(env["ETL_STATE_DB"]).read_bytes().decode("utf-8", "replace")
    for where, text in [*enumerate(outputs), ("etlctl runs", runs.stdout + runs.stderr), ("run store", state)]:
        assert PASSWORD not in text, where
    assert all(PASSWORD not in text for text in stored)


@pytest.mark.mariadb
@pytest.mark.parametrize("target", ["sqlite", "mariadb"])
def test_a_password_with_uri_delimiters_is_never_shown(
    target: str, tmp_path: Path, mariadb: MariaDB, mariadb_db: str
) -> None:
    """The source is MariaDB (a SQLite connection has no password); the target is either database."""
    source = Db("mariadb", tmp_path, mariadb, mariadb_db)
    source.create_source([("K1", "one", 1, None, ts(DAY_A, 0)), ("K2", "two", 1, "n", ts(DAY_A, 1))])
    uri = password_user(mariadb, mariadb_db)
    db = source if target == "mariadb" else Db("sqlite", tmp_path)
    env = stage_env(tmp_path, ds_src=uri, ds_tgt=uri if target == "mariadb" else db.conn_json())
    outputs = []
    for stage in STAGES:
        proc = etlctl_run_stage("ds", stage, tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B, env=env)
        assert proc.returncode == 0, proc.stderr
        outputs += [proc.stdout, proc.stderr]
    assert snapshot(db) == digest([("K1", "one", 1, None), ("K2", "two", 1, "n")])
    assert list((tmp_path / "store").rglob("*.json")), "the run stored its statistics"
    assert_no_password(tmp_path, env, *outputs)


@pytest.mark.mariadb
def test_a_refused_login_with_that_password_is_one_line_without_it(
    tmp_path: Path, mariadb: MariaDB, mariadb_db: str
) -> None:
    db = Db("mariadb", tmp_path, mariadb, mariadb_db)
    db.create_source([("K1", "one", 1, None, ts(DAY_A, 0))])
    db.sql(f"CREATE TABLE ds_target (key_id VARCHAR(60) COLLATE utf8mb4_nopad_bin NOT NULL PRIMARY KEY, {EXISTING})")
    db.sql("INSERT INTO ds_target VALUES ('K0', 'before', 1, NULL)")
    uri = password_user(mariadb, mariadb_db)
    wrong = uri.replace(f":{PASSWORD}@", f":{PASSWORD}-wrong@")  # holds the password: neither may show
    env = stage_env(tmp_path, ds_src=uri, ds_tgt=wrong)
    proc = assert_refused(env, tmp_path, db, "cleanup", r"cannot connect to ds_tgt \(mysql localhost:\d+/t_\w+\)")
    assert_no_password(tmp_path, env, proc.stderr)


# -- (d) odd characters ------------------------------------------------------------------------------
def test_odd_characters_round_trip_exactly(db: Db, tmp_path: Path) -> None:
    keys = sorted({v for v in ODD_TEXT if v is not None})
    assert not any("\x00" in k for k in keys)
    rows: list[Row] = [(key, key, i, ODD_TEXT[-1 - i % len(ODD_TEXT)], ts(DAY_A, i)) for i, key in enumerate(keys)]
    db.create_source(rows)
    stats = run_pipeline(db_env(tmp_path, db), tmp_path, DAY_A, "r1")
    assert stats["load_target"]["rows_out"] == len(keys)
    expected = [(key, label, v, note) for key, label, v, note, _ts in rows]
    assert snapshot(db) == digest(expected), sorted(set(db.target_rows()) ^ set(expected), key=repr)
    assert sorted(db.target_rows()) == sorted(expected)  # and value for value, not only as a checksum


# -- (e) table identity --------------------------------------------------------------------------------
def etlctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "entity_etl.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def edit_entity(env: dict[str, str], old: str, new: str, name: str = "ds") -> Path:
    path = Path(env["ETL_INCLUDE_DIR"]) / "entities" / f"{name}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("spelling", ["DS_TARGET", "Ds_Target", "{schema}.ds_target"])
def test_a_staging_table_that_is_the_target_in_any_spelling_is_refused(spelling: str, db: Db, tmp_path: Path) -> None:
    db.create_source([("K1", "a", 1, None, ts(DAY_A, 0))])
    env = db_env(tmp_path, db)
    run_pipeline(env, tmp_path, DAY_A, "r1")
    before = snapshot(db)
    assert before[0] == 1
    schema = db.db if db.kind == "mariadb" else "main"
    path = edit_entity(env, "table: stg_ds", f"table: {spelling.format(schema=schema)}")
    check = etlctl(env, "validate")
    assert check.returncode != 0
    assert f"{path}: staging.table: " in check.stderr and "is the target.table" in check.stderr
    for stage in ("cleanup", "load_staging", "dedupe", "load_target"):
        proc = etlctl_run_stage("ds", stage, tmp_path / "store", run_id="r2", start=DAY_A, end=DAY_B, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and "staging.table" in lines[0], proc.stderr
    assert snapshot(db) == before


def test_two_entity_files_sharing_a_staging_table_are_refused(db: Db, tmp_path: Path) -> None:
    env = db_env(tmp_path, db)
    include = Path(env["ETL_INCLUDE_DIR"])
    text = (include / "entities" / "ds.yaml").read_text()
    write_entity(include, "ds2", text.replace("entity: ds", "entity: ds2").replace("ds_target", "ds2_target"), SQL)
    check = etlctl(env, "validate")
    assert check.returncode != 0
    assert "staging.table: 'stg_ds' is also the staging.table of" in check.stderr
    assert "ds.yaml" in check.stderr and "ds2.yaml" in check.stderr


def test_a_table_the_pipeline_did_not_create_is_never_dropped(db: Db, tmp_path: Path) -> None:
    db.create_source([("K1", "a", 1, None, ts(DAY_A, 0))])
    db.sql("CREATE TABLE stg_ds (id VARCHAR(20), note VARCHAR(20))")
    db.sql("INSERT INTO stg_ds VALUES ('keep', 'me')")
    env = db_env(tmp_path, db)
    assert_refused(env, tmp_path, db, "cleanup", r"staging\.table 'stg_ds' exists in ds_tgt but the pipeline did not")
    assert db.sql("SELECT id, note FROM stg_ds") == [("keep", "me")]


# -- (f) stage chain: load_staging rerun after dedupe ------------------------------------------------------
def test_load_target_refuses_staging_reloaded_after_dedupe(db: Db, tmp_path: Path) -> None:
    rows: list[Row] = [
        ("K1", "new", 2, None, ts(DAY_A, 0)),
        ("K1", "old", 1, None, ts(DAY_A, 1)),  # last in extract order
        ("K2", "only", 1, None, ts(DAY_A, 2)),
    ]
    db.create_source(rows)
    env = db_env(tmp_path, db)
    run_pipeline(env, tmp_path, DAY_A, "r1")
    expected = digest([("K1", "new", 2, None), ("K2", "only", 1, None)])
    assert snapshot(db) == expected
    run_pipeline(env, tmp_path, DAY_A, "r1", ["load_staging"])  # "Clear" on load_staging alone
    proc = etlctl_run_stage("ds", "load_target", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert "was reloaded" in lines[0] and "dedupe did not run on it" in lines[0]
    assert snapshot(db) == expected
    run_pipeline(env, tmp_path, DAY_A, "r1", ["dedupe", "load_target"])
    assert snapshot(db) == expected


# -- (h) strict config -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("schedule:", 'enabled: "yes"\nschedule:', "enabled"),
        ("schedule:", "enabled: 1\nschedule:", "enabled"),
        ("chunk_rows: 1000}}\nstaging", 'chunk_rows: "1000"}}\nstaging', "source.chunk_rows"),
        ("type: integer", "type: integr", "columns[2].type"),
        ("key: [id]", "key: [idx]", "dedupe.key"),
    ],
)
def test_a_loose_config_value_is_refused_naming_its_field(
    old: str, new: str, field: str, db: Db, tmp_path: Path
) -> None:
    db.create_source([("K1", "a", 1, None, ts(DAY_A, 0))])
    env = db_env(tmp_path, db)
    run_pipeline(env, tmp_path, DAY_A, "r1")
    before = snapshot(db)
    path = edit_entity(env, old.replace("}}", "}"), new.replace("}}", "}"))
    check = etlctl(env, "validate")
    assert check.returncode != 0 and f"{path}: {field}" in check.stderr, check.stderr
    for stage in STAGES:
        proc = etlctl_run_stage("ds", stage, tmp_path / "store", run_id="r2", start=DAY_A, end=DAY_B, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and f"{path}: {field}" in lines[0], proc.stderr
    assert snapshot(db) == before


# -- later sections: fencing ---------------------------------------------------------------------------
