"""``expect_rows``: too few extracted rows fail the extract through ``etlctl run-stage`` on SQLite, with
one line naming the entity, the interval and the minimum, and nothing for the later stages to load;
an extract with no rows and no minimum succeeds with a visible warning."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from support.entity_files import MINIMAL, make_include, write_entity
from support.pipeline import END, START, etlctl_run_stage

INTERVAL = "[2026-01-01 00:00:00, 2026-01-02 00:00:00)"
ROWS = [
    ("a1", "one", "1.00", "2026-01-01 08:00:00"),
    ("a2", "two", "2.00", "2026-01-01 09:00:00"),
    ("a3", "late", "3.00", "2026-01-02 00:00:00"),  # the next interval: never extracted here
]


def _setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expect: str) -> tuple[Path, Path, Path]:
    include = make_include(tmp_path)
    write_entity(include, "er", MINIMAL.format(name="er") + expect)
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, label TEXT, amount TEXT, changed_at TEXT)")
        conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?)", ROWS)
    conn.close()
    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    monkeypatch.setenv("AIRFLOW_CONN_SRC_ER", json.dumps({"conn_type": "sqlite", "host": str(src)}))
    monkeypatch.setenv("AIRFLOW_CONN_TGT", json.dumps({"conn_type": "sqlite", "host": str(tgt)}))
    return src, tgt, tmp_path / "store"


def _tables(db: Path) -> set[str]:
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    return names


def test_fewer_rows_than_the_minimum_fail_the_extract_and_load_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, tgt, store = _setup(tmp_path, monkeypatch, "expect_rows: {min: 3}\n")
    assert etlctl_run_stage("er", "cleanup", store).returncode == 0

    proc = etlctl_run_stage("er", "extract", store)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()  # the extract's plan and progress lines, then its one error line
    assert lines[-1] == (
        f"etlctl: error: er: extract: found 2 row(s) in {INTERVAL}, fewer than expect_rows.min 3; nothing was loaded"
    )
    assert [line for line in lines if "error" in line] == lines[-1:]
    assert not list(store.rglob("*.csv.gz")) and not list(store.rglob("_manifest.json"))  # no parts, no manifest

    later = etlctl_run_stage("er", "load_staging", store)
    assert later.returncode == 1
    assert "the earlier stage extract has not succeeded" in later.stderr  # etlctl's order check
    forced = etlctl_run_stage("er", "load_staging", store, force=True)
    assert forced.returncode == 1
    assert "no finished extract" in forced.stderr  # and past it, the missing manifest
    assert "t_er" not in _tables(tgt)  # the target was never created, let alone written
    with sqlite3.connect(tgt) as conn:
        assert conn.execute("SELECT COUNT(*) FROM stg_er").fetchone() == (0,)
    conn.close()

    # The source catches up; the retry reads it again instead of resuming the discarded chunks.
    with sqlite3.connect(src) as conn:
        conn.execute("INSERT INTO src VALUES ('a4', 'three', '4.00', '2026-01-01 23:59:59')")
    conn.close()
    retry = etlctl_run_stage("er", "extract", store)
    assert retry.returncode == 0, retry.stderr
    stats = json.loads(retry.stdout)
    assert stats["rows_out"] == 3
    assert "warning" not in stats["details"]
    assert json.loads(next(store.rglob("_manifest.json")).read_text())["rows"] == 3


def test_exactly_the_minimum_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, store = _setup(tmp_path, monkeypatch, "expect_rows: {min: 2}\n")
    proc = etlctl_run_stage("er", "extract", store, force=True)  # the extract alone, on purpose
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows_out"] == 2


@pytest.mark.parametrize("expect", ["", "expect_rows: {min: 0}\n"], ids=["absent", "min-0"])
def test_no_rows_without_a_minimum_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expect: str) -> None:
    _, tgt, store = _setup(tmp_path, monkeypatch, expect)
    empty_start, empty_end = START.replace(year=2025), END.replace(year=2025)  # the source has nothing then
    for stage in ("cleanup", "extract", "load_staging", "dedupe", "load_target"):
        proc = etlctl_run_stage("er", stage, store, start=empty_start, end=empty_end, env=os.environ)
        assert proc.returncode == 0, (stage, proc.stderr)
        stats = json.loads(proc.stdout)
        assert stats["rows_out"] == 0
        if stage == "extract":
            warning = "extract found no rows in [2025-01-01 00:00:00, 2025-01-02 00:00:00)"
            assert stats["details"]["warning"] == warning
            logged = [line for line in proc.stderr.splitlines() if line.endswith(f"er: {warning}")]
            assert len(logged) == 1 and " WARNING " in logged[0]  # the log line, at WARNING
        else:
            assert "warning" not in stats["details"]
    with sqlite3.connect(tgt) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t_er").fetchone() == (0,)
    conn.close()


def test_rows_in_the_interval_do_not_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, store = _setup(tmp_path, monkeypatch, "")
    proc = etlctl_run_stage("er", "extract", store, force=True)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in json.loads(proc.stdout)["details"]
    assert "no rows" not in proc.stderr


def test_the_minimum_counts_every_partition_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two array children (``split_points``): the first, with two rows, finishes its partition without
    judging; the last, with none of its own, would write the manifest and fails on the total (2 < 3)."""
    expect = "expect_rows: {min: 3}\n"
    _, _, store = _setup(tmp_path, monkeypatch, expect)
    entity = tmp_path / "include" / "entities" / "er.yaml"
    entity.write_text(
        entity.read_text().replace(
            "  extract_sql: er/extract.sql\n", "  extract_sql: er/extract.sql\n  split_points: [a2]\n"
        )
    )
    first = etlctl_run_stage("er", "extract", store, force=True, env={**os.environ, "AWS_BATCH_JOB_ARRAY_INDEX": "0"})
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["details"]["partition_rows"] == 2  # a1 and a2: keys up to the split point
    assert not list(store.rglob("_manifest.json"))
    last = etlctl_run_stage("er", "extract", store, force=True, env={**os.environ, "AWS_BATCH_JOB_ARRAY_INDEX": "1"})
    assert last.returncode == 1
    lines = last.stderr.strip().splitlines()  # the partition's plan and progress lines, then the error
    assert lines[-1] == (
        f"etlctl: error: er: extract: found 2 row(s) in {INTERVAL}, fewer than expect_rows.min 3; nothing was loaded"
    )
    assert [line for line in lines if "error" in line] == lines[-1:]
    assert not list(store.rglob("_manifest.json")) and not list(store.rglob("*.csv.gz"))
