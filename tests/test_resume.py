"""Resume from the point of failure, on MariaDB.

A stage runs as ``etlctl run-stage`` in its own process and is SIGKILLed at a named fail point
(``ETL_FAILPOINTS``): after a part was written, uploaded, loaded, committed or checkpointed, before or
after a commit. The stage is then run again, as an Airflow retry would, and the rest of the run
follows. The target must then equal the expected result exactly: the same rows, the same checksum of
all columns, nothing lost and nothing duplicated. The kill points are drawn with a fixed seed.

The extract is chunked by a non-unique, nullable column (``region``), so chunks end on key changes
and a last chunk takes the NULL keys. The lease is held by the "DAG run", as in Airflow, so a killed
stage never leaves the entity locked.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entity_etl.runtime.chunks import cut_points
from entity_etl.runtime.databases import MySQLDatabase
from entity_etl.runtime.lease import open_lease_store
from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.fail_points import failing_at
from support.pipeline import END, START, context
from support.servers import MariaDB, start_mariadb

ENTITY = """\
entity: acme
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: acme_src, extract_sql: acme/extract.sql, chunk_rows: 1000, fetch_rows: 250, chunk_key: region}
staging: {table: stg_acme}
target: {conn_id: acme_tgt, table: acme_company, chunk_rows: 1000}
columns:
  - {name: id, type: string(20), target: company_id}
  - {name: region, type: string(20)}
  - {name: name, type: string(200), target: company_name, sanitize: [trim]}
  - {name: amount, type: "decimal(18,2)"}
  - {name: changed_at, type: datetime, target: updated_at}
dedupe: {key: [id], keep: newest, order_by: changed_at}
"""
SQL = (
    "SELECT id, region, name, amount, changed_at FROM src\n"
    "WHERE changed_at >= :data_interval_start AND changed_at < :data_interval_end  -- the run's interval"
)
RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"
OWNER = f"etl_acme/{RUN_ID}"
STAGES = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
ROWS = 6000
KEYS = 5700  # about 5% duplicate keys
ODD = ["  padded  ", 'say "hi", then', "line\nbreak", "tab\there", "back\\slash", "日本語", "😀 emoji", "NULL", ""]


def source_rows() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for i in range(ROWS):
        ts = START + dt.timedelta(seconds=13 * i)
        region = None if i % 41 == 0 else f"R{(i * 7) % 23:02d}"
        name = f"{ODD[i % len(ODD)]} company {i}"
        amount = (Decimal(i * 37 % 100000) / 100).quantize(Decimal("0.01"))
        rows.append((f"K{i % KEYS:05d}", region, name, amount, ts.replace(tzinfo=None)))
    rows.append(("K99999", "R01", "too late", Decimal("1.00"), END.replace(tzinfo=None)))
    return rows


def expected_target() -> list[tuple[Any, ...]]:
    """Computed from the source rows alone: the newest row per id in the interval, name trimmed."""
    newest: dict[str, tuple[Any, ...]] = {}
    for row in source_rows():
        if not (START.replace(tzinfo=None) <= row[4] < END.replace(tzinfo=None)):
            continue
        if row[0] not in newest or row[4] > newest[row[0]][4]:
            newest[row[0]] = row
    return sorted((k, r[1], r[2].strip(" "), r[3], r[4]) for k, r in newest.items())  # SQL TRIM: spaces


def checksum(rows: list[tuple[Any, ...]]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(repr(row).encode())
    return digest.hexdigest()


EXPECTED = expected_target()

# -- the seeded kill points: (fail point, hit number) ------------------------------------------
POINTS = {
    "extract": ["extract.batch_written", "extract.part_uploaded", "extract.checkpointed"],
    "load_staging": ["load_staging.part_loaded", "load_staging.part_committed", "load_staging.checkpointed"],
    "dedupe": ["dedupe.deleted"],
    "load_target": ["load_target.chunk_written", "load_target.chunk_committed", "load_target.checkpointed"],
}
MAX_HIT = {"extract.batch_written": 16, "dedupe.deleted": 1}  # others: per chunk, at least 5 chunks


def kill_points(seed: int = 20261125, per_stage: int = 6) -> list[tuple[str, str, int]]:
    # Distinct cases: drawn without replacement from each stage's (point, hit) pairs; dedupe has one.
    rng = random.Random(seed)
    cases = []
    for stage, points in POINTS.items():
        pairs = [(p, n) for p in points for n in range(1, MAX_HIT.get(p, 5) + 1)]
        count = {"dedupe": 1, "extract": per_stage + 1}.get(stage, per_stage)
        cases += [(stage, p, n) for p, n in rng.sample(pairs, min(count, len(pairs)))]
    return cases


KILL_POINTS = kill_points()
assert len(KILL_POINTS) == len(set(KILL_POINTS)) == 20


# -- fixtures -----------------------------------------------------------------------------------
def create_source(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE src (id VARCHAR(20), region VARCHAR(20), name VARCHAR(200), amount DECIMAL(18,2), "
        "changed_at DATETIME, KEY (region))"
    )
    cur.executemany("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", source_rows())
    conn.commit()


@pytest.fixture
def setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb: MariaDB, mariadb_db: str
) -> Iterator[dict[str, Any]]:
    yield from _setup(tmp_path, monkeypatch, mariadb, mariadb_db)


def _setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: MariaDB, db: str, entity: str = ENTITY
) -> Iterator[dict[str, Any]]:
    include = make_include(tmp_path)
    write_entity(include, "acme", entity, SQL)
    conn = server.connect(db)
    create_source(conn)
    conn.close()
    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("ETL_OBJECT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ETL_FAILPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_ACME_SRC", server.conn_json(db))
    monkeypatch.setenv("AIRFLOW_CONN_ACME_TGT", server.conn_json(db))
    monkeypatch.delenv("ETL_FAILPOINTS", raising=False)
    # The DAG run's setup task holds the lease; stages only renew it (as under Airflow).
    open_lease_store().acquire("acme", OWNER, 900)
    yield {"include": include, "store": tmp_path / "store", "server": server, "db": db, "tmp": tmp_path}


def in_process(setup: dict[str, Any], stage: str) -> dict[str, Any]:
    ctx = context(setup["include"], "acme", setup["store"], run_id=RUN_ID, lease_owner=OWNER)
    return run_stage(ctx, stage).to_dict()


def etlctl(stage: str, failpoints: str = "", array_index: int | None = None, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "ETL_LEASE_OWNER": OWNER, "ETL_FAILPOINTS": failpoints}
    if array_index is not None:  # as AWS Batch sets it in each child of an array job
        env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(array_index)
    cmd = [sys.executable, "-m", "entity_etl.cli", "run-stage", "--entity", "acme", "--stage", stage]
    cmd += ["--run-id", RUN_ID, "--interval-start", START.isoformat(), "--interval-end", END.isoformat()]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def target_rows(setup: dict[str, Any]) -> list[tuple[Any, ...]]:
    conn = setup["server"].connect(setup["db"])
    cur = conn.cursor()
    cur.execute("SELECT company_id, region, company_name, amount, updated_at FROM acme_company ORDER BY company_id")
    rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    return rows


def assert_exact_target(setup: dict[str, Any]) -> None:
    rows = target_rows(setup)
    assert len(rows) == len(EXPECTED) == KEYS
    assert checksum(rows) == checksum(EXPECTED)
    assert rows == EXPECTED


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("stage", "point", "nth"), KILL_POINTS, ids=[f"{p}@{n}" for _, p, n in KILL_POINTS])
def test_sigkill_then_rerun_gives_the_exact_target(setup: dict[str, Any], stage: str, point: str, nth: int) -> None:
    for before in STAGES[: STAGES.index(stage)]:
        in_process(setup, before)
    proc = etlctl(stage, f"{point}=kill@{nth}")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{point}@{nth} never fired: rc={proc.returncode} {err[-500:]}"
    record = open_run_store().get("acme", RUN_ID, stage)
    assert record is not None and record.status == "running"  # as a killed container leaves it

    stats = in_process(setup, stage)  # the retry
    record = open_run_store().get("acme", RUN_ID, stage)
    assert record is not None and (record.status, record.attempt) == ("succeeded", 2)
    if point != "extract.batch_written" and stage != "dedupe":
        # Resumed after exactly the chunks checkpointed before the kill.
        resumed = stats["details"].get("resumed_chunks", stats["details"].get("resumed_parts"))
        assert resumed == (nth if point.endswith("checkpointed") else nth - 1)
    for after in STAGES[STAGES.index(stage) + 1 :]:
        in_process(setup, after)
    assert_exact_target(setup)


def test_two_kills_in_one_stage_and_the_extract_is_resumed_not_redone(setup: dict[str, Any]) -> None:
    in_process(setup, "cleanup")
    for nth in (2, 2):  # each run's 2nd checkpoint: the second run starts after the first run's
        proc = etlctl("extract", f"extract.checkpointed=kill@{nth}")
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
    checkpoints = open_run_store().checkpoints("acme", RUN_ID, "extract")
    assert [c.chunk for c in checkpoints] == ["000000", "000001", "000002", "000003"]
    stats = in_process(setup, "extract")
    assert stats["details"]["resumed_chunks"] == 4
    assert stats["rows_out"] == ROWS
    for after in STAGES[2:]:
        in_process(setup, after)
    assert_exact_target(setup)


def test_a_succeeded_stage_is_redone_from_the_start(setup: dict[str, Any]) -> None:
    first = {stage: in_process(setup, stage) for stage in STAGES}
    assert first["extract"]["details"]["resumed_chunks"] == 0
    chunk_ids = [c.chunk for c in open_run_store().checkpoints("acme", RUN_ID, "extract")]
    assert chunk_ids[-1] == "null" and len(chunk_ids) >= 6
    again = in_process(setup, "extract")
    assert again["details"]["resumed_chunks"] == 0 and again["rows_out"] == ROWS
    for stage in STAGES[2:]:
        assert in_process(setup, stage)["details"].get("resumed_parts", 0) == 0
    assert_exact_target(setup)


@pytest.mark.parametrize(
    ("stage", "point"), [("extract", "extract.checkpointed"), ("load_target", "load_target.checkpointed")]
)
def test_a_redone_stage_interrupted_after_its_first_chunk_resumes_from_that_chunk_only(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, stage: str, point: str
) -> None:
    """A succeeded stage is redone afresh; that attempt fails (in-process) right after its first
    checkpoint. The earlier run's checkpoints were removed before it, so the retry resumes after that one
    chunk only: not after the earlier run's last chunk, whose extract parts the redo had deleted."""
    for done in STAGES:
        in_process(setup, done)
    fault = rf"^acme: {stage}: InjectedFault: fail point {point} \(hit 1\)$"
    with failing_at(monkeypatch, f"{point}=raise@1"), pytest.raises(StageError, match=fault):
        in_process(setup, stage)
    assert [c.chunk for c in open_run_store().checkpoints("acme", RUN_ID, stage)] == ["000000"]
    again = in_process(setup, stage)
    assert again["details"]["resumed_chunks"] == 1
    for later in STAGES[STAGES.index(stage) + 1 :]:
        in_process(setup, later)
    assert_exact_target(setup)


def test_chunks_never_split_equal_keys_and_null_keys_get_their_own_chunk(setup: dict[str, Any]) -> None:
    in_process(setup, "cleanup")
    stats = in_process(setup, "extract")
    checkpoints = open_run_store().checkpoints("acme", RUN_ID, "extract")
    ranges = [(c.data["after"], c.data["upto"]) for c in checkpoints]
    # Each range starts where the previous one ended; the last range is open-ended; then the NULLs.
    for (_, upto), (after, _) in itertools.pairwise(ranges[:-1]):
        assert after == upto
    assert ranges[-2][1] is None and checkpoints[-1].chunk == "null"
    in_interval = [r for r in source_rows() if r[4] < END.replace(tzinfo=None)]
    assert checkpoints[-1].data["rows"] == sum(1 for r in in_interval if r[1] is None)
    # A region's rows are all in one chunk: chunk sizes are whole regions, so they may pass 1000.
    by_region: dict[str, int] = {}
    for r in in_interval:
        if r[1] is not None:
            by_region[r[1]] = by_region.get(r[1], 0) + 1
    sizes = [c.data["rows"] for c in checkpoints[:-1]]
    assert sum(sizes) + checkpoints[-1].data["rows"] == stats["rows_out"] == ROWS
    regions = sorted(by_region)
    bounds = [None] + [c.data["upto"]["str"] if c.data["upto"] else None for c in checkpoints[:-1]]
    for lo, hi, size in zip(bounds[:-1], bounds[1:], sizes, strict=True):
        assert size == sum(by_region[g] for g in regions if (lo is None or g > lo) and (hi is None or g <= hi))


def _extract_chunks(setup: dict[str, Any], run_id: str) -> list[tuple[Any, ...]]:
    """Run the extract for ``run_id``; return each chunk's (id, bounds, rows, sorted CSV records)."""
    ctx = context(setup["include"], "acme", setup["store"], run_id=run_id, lease_owner=OWNER)
    run_stage(ctx, "extract")
    found = []
    for c in open_run_store().checkpoints("acme", run_id, "extract"):
        records: list[bytes] = []
        if c.data["key"]:
            records = sorted(gzip.decompress(ctx.store.get_bytes(c.data["key"])).split(b"\n"))
        found.append((c.chunk, c.data["after"], c.data["upto"], c.data["rows"], records))
    return found


@pytest.mark.mariadb
@pytest.mark.parametrize("window", [3, MySQLDatabase.chunk_window])
def test_one_window_query_cuts_exactly_the_chunks_of_one_query_per_chunk(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Under a case- and accent-insensitive, PAD SPACE collation ('R05', 'r05' and 'R05 ' are one key),
    window queries (one read of the source for several chunks; 3 makes several windows here) and one
    query per chunk give the same chunks, bounds, row counts and rows."""
    conn = setup["server"].connect(setup["db"])
    cur = conn.cursor()
    cur.execute("ALTER TABLE src MODIFY region VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.execute("UPDATE src SET region = LOWER(region) WHERE CAST(SUBSTRING(id, 2) AS UNSIGNED) % 3 = 0")
    cur.execute("UPDATE src SET region = CONCAT(region, ' ') WHERE CAST(SUBSTRING(id, 2) AS UNSIGNED) % 3 = 1")
    conn.commit()
    conn.close()
    monkeypatch.setattr(MySQLDatabase, "chunk_window", window)
    windowed = _extract_chunks(setup, "window-run")
    monkeypatch.setattr(MySQLDatabase, "chunk_window", 1)
    per_chunk = _extract_chunks(setup, "per-chunk-run")
    assert len(windowed) >= 5  # several chunks, then the NULL keys' chunk
    assert windowed == per_chunk
    assert sum(rows for *_, rows, _ in windowed) == ROWS  # every row of the interval, once


def _offset_bounds(groups: list[tuple[int, int]], rows: int) -> list[int]:
    """The bounds as ``ORDER BY key LIMIT 1 OFFSET rows - 1`` past each bound finds them, row by row."""
    keys = [k for k, n in groups for _ in range(n)]
    bounds: list[int] = []
    while len(rest := [k for k in keys if not bounds or k > bounds[-1]]) >= rows:
        bounds.append(rest[rows - 1])
    return bounds


@given(
    counts=st.lists(st.integers(1, 6), max_size=60),
    rows=st.integers(1, 15),
    batch=st.integers(1, 9),
)
def test_one_pass_cut_points_equal_one_offset_query_per_chunk(counts: list[int], rows: int, batch: int) -> None:
    groups = list(enumerate(counts))  # (key, rows with that key), in key order
    batches = [groups[i : i + batch] for i in range(0, len(groups), batch)]
    assert list(cut_points(batches, rows)) == _offset_bounds(groups, rows)


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB of this test's own, since the test restarts it."""
    server = start_mariadb(tmp_path_factory.mktemp("mariadb-restart"))
    yield server
    server.stop()


@pytest.mark.parametrize("stage", ["load_staging", "load_target"])
def test_database_restart_during_a_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_server: MariaDB, stage: str
) -> None:
    conn = own_server.connect()
    conn.cursor().execute("CREATE DATABASE r CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()
    setup = next(_setup(tmp_path, monkeypatch, own_server, "r"))
    for before in STAGES[: STAGES.index(stage)]:
        in_process(setup, before)
    point = "load_staging.part_committed" if stage == "load_staging" else "load_target.chunk_committed"
    proc = etlctl(stage, f"{point}=pause@2")
    marker = tmp_path / f"{point}.paused"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    own_server.stop()  # the database goes away mid-load ...
    own_server.start()  # ... and comes back
    marker.unlink()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("etlctl: error: ")]
    assert len(lines) == 1, err[-1500:]
    line = lines[0].removeprefix("etlctl: error: ")
    assert line.startswith(f"acme: {stage}: acme_tgt: ") and ("gone away" in line or "Lost connection" in line), line
    stats = in_process(setup, stage)
    resumed = stats["details"].get("resumed_parts", stats["details"].get("resumed_chunks"))
    assert resumed >= 2
    for after in STAGES[STAGES.index(stage) + 1 :]:
        in_process(setup, after)
    assert_exact_target(setup)


def test_bad_failpoint_spec_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from entity_etl.runtime import failpoints

    monkeypatch.setenv("ETL_FAILPOINTS", "extract.part_uploaded=explode")
    with pytest.raises(ValueError, match=re.escape("bad entry 'extract.part_uploaded=explode'")):
        failpoints.reload()
    monkeypatch.setenv("ETL_FAILPOINTS", "x=raise@2")
    failpoints.reload()
    failpoints.hit("x")
    with pytest.raises(failpoints.InjectedFault):
        failpoints.hit("x")
    monkeypatch.delenv("ETL_FAILPOINTS")
    failpoints.reload()


def test_a_corrupt_extract_part_is_one_clear_line(setup: dict[str, Any]) -> None:
    """A damaged part fails load_staging with one line naming the entity, the stage and the object."""
    for before in STAGES[:2]:
        in_process(setup, before)
    manifest = next(setup["store"].rglob("_manifest.json"))
    part = next(manifest.parent.glob("part-000001.csv.gz"))
    part.write_bytes(b"not gzip")
    with pytest.raises(StageError, match=r"^acme: load_staging: .*part-000001.csv.gz is not a readable gzip part"):
        in_process(setup, "load_staging")


# -- key-range partitions (AWS Batch array-job children) -------------------------------------------
SPLIT = ["R05", "R12", "R18"]
PARTITIONED = ENTITY.replace("chunk_key: region}", f"chunk_key: region, split_points: {SPLIT}}}")


@pytest.fixture
def partitioned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb: MariaDB, mariadb_db: str
) -> Iterator[dict[str, Any]]:
    yield from _setup(tmp_path, monkeypatch, mariadb, mariadb_db, PARTITIONED)


def in_interval() -> list[tuple[Any, ...]]:
    return [r for r in source_rows() if r[4] < END.replace(tzinfo=None)]


def expected_partition_rows() -> list[int]:
    """Rows per partition, from the source alone: key <= R05, R05 < key <= R12, ..., > R18 and NULL."""
    counts = [0] * (len(SPLIT) + 1)
    for row in in_interval():
        region = row[1]
        index = len(SPLIT) if region is None else sum(1 for s in SPLIT if region > s)
        counts[index] += 1
    return counts


@pytest.mark.parametrize("window", [MySQLDatabase.chunk_window, 1], ids=["window", "query-per-chunk"])
def test_partitions_in_one_process_then_the_exact_target(
    partitioned: dict[str, Any], monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Each partition holds exactly its key range's rows, read by window queries (the MySQL default) and
    by one query per chunk (as on SQLite), where a chunk bound past the partition's end would show."""
    monkeypatch.setattr(MySQLDatabase, "chunk_window", window)
    in_process(partitioned, "cleanup")
    stats = in_process(partitioned, "extract")  # no partition given: all of them, one after the other
    assert stats["details"]["partitions"] == [0, 1, 2, 3]
    assert stats["rows_out"] == ROWS
    store = open_run_store()
    per_partition = [
        sum(c.data["rows"] for c in store.checkpoints("acme", RUN_ID, f"extract.p{i:02d}")) for i in range(4)
    ]
    assert per_partition == expected_partition_rows()
    assert all(n > 0 for n in per_partition)
    for stage in STAGES[2:]:
        in_process(partitioned, stage)
    assert_exact_target(partitioned)


def test_a_partitions_checkpoint_is_the_extract_checkpointed_fail_point(
    partitioned: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fail point names are the stage's (README "Resume"), also in a partition's checkpoints
    (``extract.p01``): the second checkpoint of the extract fails, in-process, and the retry finishes."""
    in_process(partitioned, "cleanup")
    fault = r"^acme: extract: InjectedFault: fail point extract.checkpointed \(hit 2\)$"
    with failing_at(monkeypatch, "extract.checkpointed=raise@2"), pytest.raises(StageError, match=fault):
        in_process(partitioned, "extract")
    store = open_run_store()
    assert sum(len(store.checkpoints("acme", RUN_ID, f"extract.p{i:02d}")) for i in range(4)) == 2
    stats = in_process(partitioned, "extract")
    assert stats["details"]["resumed_chunks"] == 2 and stats["rows_out"] == ROWS


def test_array_children_in_parallel_merge_into_one_manifest(partitioned: dict[str, Any]) -> None:
    in_process(partitioned, "cleanup")
    children = [etlctl("extract", array_index=i) for i in range(4)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [c.returncode for c in children] == [0, 0, 0, 0], [err[-400:] for _, err in outputs]
    reported = [json.loads(out) for out, _ in outputs]
    assert sorted(r["details"]["partitions"][0] for r in reported) == [0, 1, 2, 3]
    assert sorted(r["details"]["partition_rows"] for r in reported) == sorted(expected_partition_rows())
    # The last child to finish wrote the manifest and the whole stage's record.
    manifest = json.loads(next(partitioned["store"].rglob("_manifest.json")).read_text())
    assert manifest["rows"] == ROWS and manifest["split_points"] == SPLIT
    records = {r.stage: r for r in open_run_store().run_records("acme", RUN_ID)}
    assert {f"extract.p{i:02d}" for i in range(4)} <= set(records)
    assert records["extract"].status == "succeeded" and records["extract"].stats["rows_out"] == ROWS
    for stage in STAGES[2:]:
        in_process(partitioned, stage)
    assert_exact_target(partitioned)


def test_a_killed_array_child_resumes_and_completes_the_merge(partitioned: dict[str, Any]) -> None:
    in_process(partitioned, "cleanup")
    killed = etlctl("extract", "extract.checkpointed=kill@1", array_index=2)
    others = [etlctl("extract", array_index=i) for i in (0, 1, 3)]
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    assert [o.wait(timeout=120) for o in others] == [0, 0, 0]
    assert not list(partitioned["store"].rglob("_manifest.json"))  # partition 2 is unfinished: no manifest
    with pytest.raises(StageError, match=r"^acme: no finished extract for run"):
        in_process(partitioned, "load_staging")
    retry = etlctl("extract", array_index=2)  # Batch retries the failed child
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err[-400:]
    stats = json.loads(out)
    assert stats["details"]["resumed_chunks"] == 1 and stats["rows_out"] == ROWS
    for stage in STAGES[2:]:
        in_process(partitioned, stage)
    assert_exact_target(partitioned)


def test_a_partition_out_of_range_and_bad_split_points_are_refused(partitioned: dict[str, Any], tmp_path: Path) -> None:
    in_process(partitioned, "cleanup")
    proc = etlctl("extract", array_index=4)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert (
        "etlctl: error: acme: extract: partition 4 does not exist; source.split_points gives 4 partition(s), 0 to 3"
        in err
    )
    from entity_etl.config.loader import load_entities

    for bad, message in (("[R12, R05]", "must be strictly increasing"), ("[1, R05]", "mixes numbers and strings")):
        write_entity(
            partitioned["include"],
            "acme",
            ENTITY.replace("chunk_key: region}", f"chunk_key: region, split_points: {bad}}}"),
            SQL,
        )
        (problem,) = load_entities(partitioned["include"] / "entities", partitioned["include"] / "sql").problems
        assert "source.split_points" in str(problem) and message in str(problem)
