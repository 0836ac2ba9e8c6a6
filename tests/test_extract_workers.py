"""``ETL_EXTRACT_WORKERS``: an extract's key-range partitions in worker processes, on SQLite and MariaDB.

The same target as one partition after the other (row count, a checksum of all columns, the odd values
of ``support.odd_values`` included), the same parts; a worker killed or failing at a fail point fails
the stage naming its partition, and the rerun resumes every partition from its checkpoints (a finished
one is not redone) to the exact target; a bad setting is one clear line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entity_etl.runtime.lease import open_lease_store
from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.odd_values import ODD_TEXT
from support.pipeline import END, START, context
from support.servers import MariaDB

SPLIT = [4000, 10000, 10400]  # partitions of 4001, 6000, 400 and 1599 rows
ENTITY = f"""\
entity: odd
schedule: "@daily"
start_date: 2026-01-01
source: {{conn_id: odd_src, extract_sql: odd/extract.sql, chunk_rows: 1000, fetch_rows: 250, chunk_key: id,
  split_points: {SPLIT}}}
staging: {{table: stg_odd}}
target: {{conn_id: odd_tgt, table: t_odd}}
columns:
  - {{name: id, type: integer}}
  - {{name: txt, type: text}}
  - {{name: short_txt, type: string(200)}}
  - {{name: amount, type: "decimal(18,4)"}}
  - {{name: changed_at, type: datetime}}
dedupe: {{key: [id], keep: first}}
"""
SQL = "SELECT id, txt, short_txt, amount, changed_at FROM src WHERE changed_at >= :data_interval_start"
STAGES = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
OWNER = "etl_odd/test-run"
ROWS = 12000


def source_rows() -> list[tuple[Any, ...]]:
    rows = []
    for i in range(ROWS):
        v = ODD_TEXT[i % len(ODD_TEXT)]
        amount = None if i % 7 == 0 else f"{i * 3}.{i % 10000:04d}"
        rows.append((i, v, v, amount, "2026-01-01 10:00:00"))
    return rows


def checksum(rows: list[tuple[Any, ...]]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def setup(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    yield from _setup(request, tmp_path, monkeypatch, request.param)


@pytest.fixture
def sqlite_setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """For what does not depend on the database (the process tree, the setting)."""
    yield from _setup(request, tmp_path, monkeypatch, "sqlite")


def _setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> Iterator[dict[str, Any]]:
    include = make_include(tmp_path)
    write_entity(include, "odd", ENTITY, SQL)
    if kind == "sqlite":
        src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
        with sqlite3.connect(src) as conn:
            conn.execute("CREATE TABLE src (id INTEGER, txt TEXT, short_txt TEXT, amount TEXT, changed_at TEXT)")
            conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?, ?)", source_rows())
        conn.close()
        monkeypatch.setenv("AIRFLOW_CONN_ODD_SRC", json.dumps({"conn_type": "sqlite", "host": str(src)}))
        monkeypatch.setenv("AIRFLOW_CONN_ODD_TGT", json.dumps({"conn_type": "sqlite", "host": str(tgt)}))

        def target() -> list[tuple[Any, ...]]:
            with sqlite3.connect(tgt) as conn:
                found = conn.execute("SELECT id, txt, short_txt, amount, changed_at FROM t_odd ORDER BY id").fetchall()
            conn.close()
            return found
    else:
        server: MariaDB = request.getfixturevalue("mariadb")
        db: str = request.getfixturevalue("mariadb_db")
        conn = server.connect(db)
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE src (id INT PRIMARY KEY, txt MEDIUMTEXT, short_txt VARCHAR(200), amount DECIMAL(18,4), "
            "changed_at DATETIME) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )
        cur.executemany("INSERT INTO src VALUES (%s, %s, %s, %s, %s)", source_rows())
        conn.commit()
        conn.close()
        monkeypatch.setenv("AIRFLOW_CONN_ODD_SRC", server.conn_json(db))
        monkeypatch.setenv("AIRFLOW_CONN_ODD_TGT", server.conn_json(db))

        def target() -> list[tuple[Any, ...]]:
            conn = server.connect(db)
            cur = conn.cursor()
            cur.execute("SELECT id, txt, short_txt, amount, changed_at FROM t_odd ORDER BY id")
            found = [(r[0], r[1], r[2], None if r[3] is None else str(r[3]), str(r[4])) for r in cur.fetchall()]
            conn.close()
            return found

    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    monkeypatch.setenv("ETL_OBJECT_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("ETL_FAILPOINT_DIR", str(tmp_path))
    monkeypatch.delenv("ETL_FAILPOINTS", raising=False)
    monkeypatch.delenv("ETL_EXTRACT_WORKERS", raising=False)
    open_lease_store().acquire("odd", OWNER, 900)  # held by the "DAG run", as under Airflow
    yield {"include": include, "store": tmp_path / "store", "target": target}


def stage(setup: dict[str, Any], name: str, run_id: str) -> dict[str, Any]:
    ctx = context(setup["include"], "odd", setup["store"], run_id=run_id, lease_owner=OWNER)
    return run_stage(ctx, name).to_dict()


def run_pipeline(setup: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {name: stage(setup, name, run_id) for name in STAGES}


def parts_of(setup: dict[str, Any], stats: dict[str, Any]) -> list[tuple[int, bytes]]:
    """The manifest's parts in order: rows and decompressed CSV of each."""
    manifest = json.loads(Path(stats["details"]["manifest"].removeprefix("file://")).read_bytes())
    store = setup["store"]
    return [(p["rows"], gzip.decompress((store / p["key"]).read_bytes())) for p in manifest["parts"]]


def assert_exact(setup: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    rows = setup["target"]()
    assert len(rows) == ROWS
    assert checksum(rows) == checksum(expected)
    assert rows == expected


def test_workers_give_the_same_parts_and_target_as_one_after_the_other(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    one = run_pipeline(setup, "run-w1")
    assert "workers" not in one["extract"]["details"]  # the default: no worker processes
    baseline = setup["target"]()
    assert baseline == [(i, t, s, a, c) for i, t, s, a, c in source_rows()]  # every odd value, exactly
    for workers in (2, 3, 4):
        monkeypatch.setenv("ETL_EXTRACT_WORKERS", str(workers))
        stats = run_pipeline(setup, f"run-w{workers}")
        extract = stats["extract"]
        assert extract["details"]["workers"] == min(workers, 4)
        assert extract["details"]["partitions"] == [0, 1, 2, 3]
        assert extract["rows_out"] == ROWS and extract["details"]["resumed_chunks"] == 0
        assert parts_of(setup, extract) == parts_of(setup, one["extract"])
        assert stats["load_target"]["rows_out"] == ROWS
        assert_exact(setup, baseline)


def _checkpoints(run_id: str) -> dict[int, list[tuple[str, dict[str, Any]]]]:
    store = open_run_store()
    return {i: [(c.chunk, c.data) for c in store.checkpoints("odd", run_id, f"extract.p{i:02d}")] for i in range(4)}


def _etlctl_extract(run_id: str, env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "entity_etl.cli", "run-stage", "--entity", "odd", "--stage", "extract"]
    cmd += ["--run-id", run_id, "--interval-start", START.isoformat(), "--interval-end", END.isoformat()]
    full = {**os.environ, "ETL_LEASE_OWNER": OWNER, **env}
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("action", ["kill", "raise"])
def test_a_failed_worker_names_its_partition_and_the_rerun_resumes(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    run_id = f"fail-{action}"
    run_pipeline(setup, "baseline")
    expected = setup["target"]()
    stage(setup, "cleanup", run_id)
    # Each worker's 3rd uploaded part: partitions 0 and 1 (5 and 6 chunks) fail there, 2 and 3 (1 and
    # 2 parts) finish; all four run at once, and the two that fail leave 2 chunks checkpointed each.
    proc = _etlctl_extract(run_id, {"ETL_EXTRACT_WORKERS": "4", "ETL_FAILPOINTS": f"extract.part_uploaded={action}@3"})
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("etlctl: error: ")]
    why = (
        "its worker process was killed by SIGKILL"
        if action == "kill"
        else "InjectedFault: fail point extract.part_uploaded (hit 3)"
    )
    assert lines == [f"etlctl: error: odd: extract: partition 0: {why}; partition 1: {why}"], err[-2000:]
    record = open_run_store().get("odd", run_id, "extract")
    assert record is not None and record.status == "failed"
    before = _checkpoints(run_id)
    assert [len(before[i]) for i in range(4)] == [2, 2, 1, 3]  # partition 3: 2 parts and the NULL keys' chunk
    # The checkpointed parts (the 3rd of partitions 0 and 1 was uploaded, not checkpointed).
    parts = [setup["store"] / d["key"] for i in range(4) for _, d in before[i] if d["key"]]
    assert len(parts) == 2 + 2 + 1 + 2 and all(p.is_file() for p in parts)
    mtimes = {p: p.stat().st_mtime_ns for p in parts}

    monkeypatch.setenv("ETL_EXTRACT_WORKERS", "2")
    stats = stage(setup, "extract", run_id)  # the retry
    assert stats["details"]["resumed_chunks"] == 8 and stats["rows_out"] == ROWS
    after = _checkpoints(run_id)
    for i in range(4):
        assert after[i][: len(before[i])] == before[i]  # what was done is kept, not redone
    assert after[2] == before[2] and after[3] == before[3]  # the finished partitions: nothing new
    assert {p: p.stat().st_mtime_ns for p in parts} == mtimes  # their parts were not written again
    for name in STAGES[2:]:
        stage(setup, name, run_id)
    assert_exact(setup, expected)


def test_workers_die_with_a_killed_stage(sqlite_setup: dict[str, Any]) -> None:
    """A stage SIGKILLed (its container killed) leaves no worker extracting without it."""
    setup = sqlite_setup
    stage(setup, "cleanup", "killed")
    marker = Path(os.environ["ETL_FAILPOINT_DIR"]) / "extract.part_uploaded.paused"
    proc = _etlctl_extract("killed", {"ETL_EXTRACT_WORKERS": "2", "ETL_FAILPOINTS": "extract.part_uploaded=pause@1"})
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.2)
    worker = int(marker.read_text())
    assert worker != proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{worker}").exists() and _state(worker) != "Z":
        assert time.monotonic() < deadline, f"worker {worker} outlived its stage"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.parametrize("value", ["0", "two", "2.5", "-1"])
def test_a_bad_setting_is_one_clear_line(
    sqlite_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    setup = sqlite_setup
    stage(setup, "cleanup", "bad")
    monkeypatch.setenv("ETL_EXTRACT_WORKERS", value)
    with pytest.raises(StageError) as caught:
        stage(setup, "extract", "bad")
    assert str(caught.value) == f"odd: extract: ETL_EXTRACT_WORKERS={value!r}: must be an integer at least 1"


def test_workers_stop_at_a_lost_lease_before_any_checkpoint(sqlite_setup: dict[str, Any]) -> None:
    """The lease taken by another run while two workers are mid-chunk: the stage fails on the lease, and
    neither worker checkpoints its chunk (each joined the lease and checks it, as array children do)."""
    stage(sqlite_setup, "cleanup", "lost")
    marker = Path(os.environ["ETL_FAILPOINT_DIR"]) / "extract.part_uploaded.paused"
    env = {"ETL_EXTRACT_WORKERS": "2", "ETL_LEASE_TTL_S": "2", "ETL_FAILPOINTS": "extract.part_uploaded=pause@1"}
    proc = _etlctl_extract("lost", env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    leases = open_lease_store()
    assert leases.release("odd", OWNER)
    leases.acquire("odd", "another-run", 900)  # a new epoch, another owner
    time.sleep(1.5)  # past the renewals (every TTL/4) that find the lease gone
    marker.unlink()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("etlctl: error: ")]
    assert len(lines) == 1 and lines[0].startswith("etlctl: error: odd: extract: "), err[-2000:]
    assert "lost the entity lease" in lines[0]
    assert _checkpoints("lost") == {0: [], 1: [], 2: [], 3: []}
    record = open_run_store().get("odd", "lost", "extract")
    assert record is not None and record.status == "failed"
