"""load_target resumed in-process after a fault between a chunk's commit and its checkpoint.

``test_resume.py`` kills ``etlctl`` children at fail points; a child runs the code as installed, so
mutation testing (README "Mutation testing") cannot see what those runs check. This suite raises at
the same fail points inside the test process (``ETL_FAILPOINTS=...=raise``), on SQLite and MariaDB,
and checks what the retry resumes: the chunk ranges and ids of its checkpoints, its plan line, its
statistics, and the exact target.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import pytest

from entity_etl.runtime import failpoints
from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.kv_entity import DAY_A, DAY_B, DAY_C, SQL, Backend, Row, backend, ts
from support.pipeline import context

__all__ = ["backend"]  # the SQLite / MariaDB fixture of kv_entity.py

# The kv entity with target chunks of 1,000 rows (the least allowed): 2,500 staged rows are the chunks
# [1,1001) [1001,2001) [2001,3001).
ENTITY = """\
entity: kv
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: kv_src, extract_sql: kv/extract.sql, chunk_rows: 1000}
staging: {table: stg_kv}
target: {conn_id: kv_tgt, table: kv_company, chunk_rows: 1000}
columns:
  - {name: id, type: string(20), target: company_id}
  - {name: val, type: string(50), target: label}
  - {name: v, type: integer, target: version}
  - {name: sector, type: string(50)}
  - {name: sector2, type: string(50)}
dedupe: {key: [id], keep: last, order_by: v}
"""
ROWS = [(f"K{i:04d}", f"label {i}", i, "s", "t", ts(DAY_A, i // 2)) for i in range(2500)]


def _staged(backend: Backend, start: int, end: int) -> int:
    """Staged rows with a row id in ``[start, end)``, counted apart from the stage's own statements."""
    return int(backend.sql(f"SELECT COUNT(*) FROM stg_kv WHERE _etl_row >= {start} AND _etl_row < {end}")[0][0])


def _fail_at(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setenv(failpoints.ENV, spec)
    failpoints.reload()


def _prepared(backend: Backend, tmp_path: Path, rows: list[Row], entity: str = ENTITY) -> Any:
    """The kv entity with ``rows`` in its source, run up to dedupe for DAY_A (run id r1); its context."""
    include = make_include(tmp_path)
    write_entity(include, "kv", entity, SQL)
    backend.add_source(rows)
    ctx = context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)
    for stage in ("cleanup", "extract", "load_staging", "dedupe"):
        run_stage(ctx, stage)
    return ctx


def _plan_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "load_target: plan:" in r.getMessage()]


def _fault_load_target(ctx: Any, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    """One load_target attempt that fails at the fail point ``spec`` (``ETL_FAILPOINTS`` syntax)."""
    _fail_at(monkeypatch, spec)
    try:
        with pytest.raises((failpoints.InjectedFault, StageError)):
            run_stage(ctx, "load_target")
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reload()


@pytest.mark.parametrize("point", ["load_target.chunk_committed", "load_target.chunk_written"])
def test_a_retry_resumes_after_the_last_checkpointed_chunk(
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    point: str,
) -> None:
    include = make_include(tmp_path)
    write_entity(include, "kv", ENTITY, SQL)
    backend.add_source(ROWS)
    ctx = context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)
    for stage in ("cleanup", "extract", "load_staging", "dedupe"):
        run_stage(ctx, stage)

    _fail_at(monkeypatch, f"{point}=raise@2")  # the second chunk: written (or committed), no checkpoint
    try:
        with pytest.raises((failpoints.InjectedFault, StageError), match=point.replace(".", r"\.")):
            run_stage(ctx, "load_target")
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reload()
    done = open_run_store().checkpoints("kv", "r1", "load_target")
    assert [(c.chunk, c.data["start"], c.data["end"], c.data["written"]) for c in done] == [
        ("000000", 1, 1001, _staged(backend, 1, 1001))
    ]

    caplog.set_level(logging.INFO)
    caplog.clear()  # the failed attempt's lines too, where an earlier test left the logger at INFO
    stats = run_stage(ctx, "load_target")
    interval = "source interval 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z"
    plan = [r.getMessage() for r in caplog.records if "load_target: plan:" in r.getMessage()]
    assert plan == [f"kv: load_target: plan: 2 chunk(s) to do, 1 resumed (done before), 3 in all; {interval}"]
    done = open_run_store().checkpoints("kv", "r1", "load_target")
    assert [(c.chunk, c.data["start"], c.data["end"], c.data["written"], c.data["kept"]) for c in done] == [
        ("000000", 1, 1001, _staged(backend, 1, 1001), 0),
        ("000001", 1001, 2001, _staged(backend, 1001, 2001), 0),
        ("000002", 2001, 3001, _staged(backend, 2001, 3001), 0),
    ]
    assert sum(c.data["written"] for c in done) == 2500
    assert stats.rows_out == 2500  # this attempt's two chunks and the checkpointed one
    assert stats.details["chunks"] == 3 and stats.details["resumed_chunks"] == 1
    assert stats.details["target_rows"] == 2500
    assert backend.target() == {r[0]: (r[1], r[2], r[3], r[4]) for r in ROWS}


def test_a_first_attempt_numbers_its_chunks_from_zero(backend: Backend, tmp_path: Path) -> None:
    include = make_include(tmp_path)
    write_entity(include, "kv", ENTITY, SQL)
    backend.add_source(ROWS[:1500])
    ctx = context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)
    for stage in ("cleanup", "extract", "load_staging", "dedupe", "load_target"):
        stats = run_stage(ctx, stage)
    done = open_run_store().checkpoints("kv", "r1", "load_target")
    assert [(c.chunk, c.data["start"], c.data["end"]) for c in done] == [("000000", 1, 1001), ("000001", 1001, 2001)]
    assert stats.details["resumed_chunks"] == 0 and stats.rows_out == 1500


@pytest.mark.parametrize(("rows", "chunks"), [(1000, 1), (2000, 2), (2001, 3)])
def test_the_plan_line_counts_the_chunks_exactly(
    backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture, rows: int, chunks: int
) -> None:
    """The plan line's count is the number of chunks the stage then upserts. On SQLite the row ids are
    1..rows, so chunks of 1,000 give exactly ``chunks``: a whole last chunk is not counted twice, a
    partial one is counted. MariaDB's auto-increment may leave gaps between the parts' ids, so there
    only the first rule is checked."""
    ctx = _prepared(backend, tmp_path, ROWS[:rows])
    caplog.set_level(logging.INFO)
    caplog.clear()
    stats = run_stage(ctx, "load_target")
    done = len(open_run_store().checkpoints("kv", "r1", "load_target"))
    if backend.kind == "sqlite":
        assert done == chunks
    plan = _plan_lines(caplog)
    assert plan == [
        f"kv: load_target: plan: {done} chunk(s) to do, 0 resumed (done before), {done} in all; "
        "source interval 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z"
    ]
    assert stats.details["chunks"] == done and stats.rows_out == rows


def test_a_retry_after_the_last_checkpoint_plans_no_chunk(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault after every chunk is checkpointed (here: counting the target's rows at the end): the retry
    has nothing left to upsert and says so (the last chunk's end, 3001, is past the last row id, 2500)."""
    # The module, not the function that entity_etl.runtime.stages exports under the same name.
    load_target = importlib.import_module("entity_etl.runtime.stages.load_target")
    ctx = _prepared(backend, tmp_path, ROWS)
    real_count = load_target.count_rows
    faults = []

    def count_rows_failing_once(db: object, table: str) -> int:
        if table == "kv_company" and not faults:
            faults.append(table)
            raise failpoints.InjectedFault("after the last checkpoint")
        return real_count(db, table)  # type: ignore[arg-type]

    monkeypatch.setattr(load_target, "count_rows", count_rows_failing_once)
    with pytest.raises((failpoints.InjectedFault, StageError), match="after the last checkpoint"):
        run_stage(ctx, "load_target")
    assert len(open_run_store().checkpoints("kv", "r1", "load_target")) == 3
    caplog.set_level(logging.INFO)
    caplog.clear()
    stats = run_stage(ctx, "load_target")
    plan = [r.getMessage() for r in caplog.records if "load_target: plan:" in r.getMessage()]
    assert plan == [
        "kv: load_target: plan: 0 chunk(s) to do, 3 resumed (done before), 3 in all; "
        "source interval 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z"
    ]
    assert stats.rows_out == 2500 and stats.details["resumed_chunks"] == 3
    assert backend.target() == {r[0]: (r[1], r[2], r[3], r[4]) for r in ROWS}


@pytest.mark.parametrize(
    ("old", "new", "table"),
    [
        (
            "target: {conn_id: kv_tgt, table: kv_company, chunk_rows: 1000}",
            "target: {conn_id: kv_tgt, table: kv_company, chunk_rows: 2000}",
            "kv_company",
        ),
        (
            "target: {conn_id: kv_tgt, table: kv_company, chunk_rows: 1000}",
            "target: {conn_id: kv_tgt, table: kv_other, chunk_rows: 1000}",
            "kv_other",
        ),
        (
            "{name: val, type: string(50), target: label}",
            "{name: val, type: string(50), target: label, sanitize: [upper]}",
            "kv_company",
        ),
    ],
    ids=["chunk_rows", "target_table", "sanitizer"],
)
def test_a_retry_under_a_changed_entity_file_starts_afresh(
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    old: str,
    new: str,
    table: str,
) -> None:
    """The entity file edited between a failed attempt and its retry (target chunk size, target table, a
    sanitizer): the checkpoints of the old plan are not reused, so no chunk is skipped under the new one."""
    ctx = _prepared(backend, tmp_path, ROWS)
    include = tmp_path / "include"
    _fault_load_target(ctx, monkeypatch, "load_target.chunk_committed=raise@2")
    assert len(open_run_store().checkpoints("kv", "r1", "load_target")) == 1

    assert old in ENTITY
    write_entity(include, "kv", ENTITY.replace(old, new), SQL)
    ctx = context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)
    caplog.set_level(logging.INFO)
    caplog.clear()
    stats = run_stage(ctx, "load_target")
    plan = [r.getMessage() for r in caplog.records if "load_target: plan:" in r.getMessage()]
    assert len(plan) == 1 and ", 0 resumed (done before)," in plan[0], plan
    assert stats.rows_out == 2500 and stats.details["resumed_chunks"] == 0
    label = str.upper if "upper" in new else str
    rows = backend.sql(f"SELECT company_id, label, version FROM {table}")
    assert {r[0]: (r[1], r[2]) for r in rows} == {r[0]: (label(r[1]), r[2]) for r in ROWS}


def test_a_rerun_after_success_writes_every_chunk_again(
    backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """load_target run again after it succeeded (Airflow's Clear on that task) is a fresh attempt: it
    does not resume from the finished attempt's checkpoints, so target rows lost since come back."""
    ctx = _prepared(backend, tmp_path, ROWS)
    run_stage(ctx, "load_target")
    backend.sql("DELETE FROM kv_company WHERE company_id < 'K2000'")
    caplog.set_level(logging.INFO)
    caplog.clear()
    stats = run_stage(ctx, "load_target")
    assert _plan_lines(caplog) == [
        "kv: load_target: plan: 3 chunk(s) to do, 0 resumed (done before), 3 in all; "
        "source interval 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z"
    ]
    assert stats.rows_out == 2500 and stats.details["resumed_chunks"] == 0
    assert stats.details["target"] == "kv_company"
    assert backend.target() == {r[0]: (r[1], r[2], r[3], r[4]) for r in ROWS}


def test_an_empty_staging_plans_no_chunk_and_says_so(
    backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No source row in the interval: load_target's plan line still names the interval, with 0 chunks;
    the chunk lines of load_target never carry MB figures (it moves rows inside the database)."""
    ctx = _prepared(backend, tmp_path, [(*r[:5], ts(DAY_B, 1)) for r in ROWS[:10]])
    caplog.set_level(logging.INFO)
    caplog.clear()
    stats = run_stage(ctx, "load_target")
    assert _plan_lines(caplog) == [
        "kv: load_target: plan: 0 chunk(s) to do, 0 resumed (done before), 0 in all; "
        "source interval 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z"
    ]
    assert stats.rows_out == 0 and stats.details["chunks"] == 0 and backend.target() == {}


def test_load_target_progress_lines_count_rows_not_bytes(
    backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _prepared(backend, tmp_path, ROWS[:1500])
    caplog.set_level(logging.INFO)
    caplog.clear()
    run_stage(ctx, "load_target")
    lines = [r.getMessage() for r in caplog.records if "load_target: chunk " in r.getMessage()]
    assert lines and lines[-1].startswith("kv: load_target: chunk 2/2 done: 1,500 rows, ")
    assert not any("MB" in line for line in lines), lines


def test_a_resumed_run_counts_the_rows_its_checkpointed_chunks_kept(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keep: newest, and a second interval whose rows are all older than the target's: every row is
    kept. After a fault at the second chunk, the retry's kept_newer still counts the first chunk's."""
    entity = ENTITY.replace("keep: last", "keep: newest")
    newer = [(r[0], r[1], r[2] + 10_000, *r[3:]) for r in ROWS]
    ctx = _prepared(backend, tmp_path, newer, entity)
    run_stage(ctx, "load_target")
    include = tmp_path / "include"
    backend.add_source([(r[0], f"older {r[2]}", r[2], r[3], r[4], ts(DAY_B, r[2] // 2)) for r in ROWS])
    ctx = context(include, "kv", tmp_path / "store", run_id="r2", start=DAY_B, end=DAY_C)
    for stage in ("cleanup", "extract", "load_staging", "dedupe"):
        run_stage(ctx, stage)
    _fault_load_target(ctx, monkeypatch, "load_target.chunk_committed=raise@2")
    stats = run_stage(ctx, "load_target")
    assert stats.details["resumed_chunks"] == 1
    assert stats.details["kept_newer"] == 2500
    assert backend.target() == {r[0]: (r[1], r[2], r[3], r[4]) for r in newer}
