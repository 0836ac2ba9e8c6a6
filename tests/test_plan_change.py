"""Checkpoints of another plan are discarded; those of the same plan are resumed. SQLite and MariaDB.

A stage runs as ``etlctl run-stage`` and is SIGKILLed at a fail point (``ETL_FAILPOINTS``) after
some chunks were checkpointed, as in tests/test_resume.py. Before the retry the plan changes: the
query text, ``source.chunk_rows``, the run's interval, or ``target.chunk_rows``. The retry must start
afresh (no chunk resumed, every checkpoint of the new plan) and the target must equal the one
computed here from the source rows; with the plan unchanged the retry resumes where the kill left it.

The changed query and interval give a different result, so checkpoints wrongly kept would show in
the target; a changed chunk size gives the same rows either way, so there the chunk sizes tell.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from entity_etl.runtime.chunks import decode_key, encode_key
from entity_etl.runtime.lease import open_lease_store
from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages import run_stage
from support.kv_entity import DAY_A, DAY_B, DAY_C, SQL, Backend, Row, backend, include_for
from support.pipeline import context, etlctl_run_stage

__all__ = ["backend"]  # the SQLite / MariaDB fixture of kv_entity.py

RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"
OWNER = f"etl_kv/{RUN_ID}"
ROWS_A = 5300  # K0000..K5299 on day A: six extract chunks of 1000 (the last 300)
ROWS_B = 3000  # K0000..K2999 again on day B, newer


def source_rows() -> list[Row]:
    def stamp(day: dt.datetime, i: int) -> str:
        return (day + dt.timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")

    rows: list[Row] = [(f"K{i:04d}", f"A {i}", i, None, None, stamp(DAY_A, i)) for i in range(ROWS_A)]
    rows += [(f"K{i:04d}", f"B {i}", ROWS_A + i, None, None, stamp(DAY_B, i)) for i in range(ROWS_B)]
    return rows


def expected(days: int = 1, keep: Any = lambda v: True) -> dict[str, tuple[Any, ...]]:
    """The newest row per key over ``days`` days from day A, among the rows ``keep(v)`` selects."""
    end = (DAY_A + dt.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
    out: dict[str, tuple[Any, ...]] = {}
    for key, label, v, _, _, ts in source_rows():
        if ts < end and keep(v) and (key not in out or v > out[key][1]):
            out[key] = (label, v, None, None)
    return out


@pytest.fixture
def kv(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    include = include_for(tmp_path)
    backend.add_source(source_rows())
    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    monkeypatch.delenv("ETL_FAILPOINTS", raising=False)
    # The DAG run holds the lease, so a killed stage leaves no lease of its own behind (as in Airflow).
    open_lease_store().acquire("kv", OWNER, 900)
    yield {"include": include, "store": tmp_path / "store", "backend": backend}


def in_process(kv: dict[str, Any], stage: str, end: dt.datetime = DAY_B) -> dict[str, Any]:
    ctx = context(kv["include"], "kv", kv["store"], run_id=RUN_ID, start=DAY_A, end=end, lease_owner=OWNER)
    return run_stage(ctx, stage).to_dict()


def killed(kv: dict[str, Any], stage: str, point: str) -> None:
    env = {**os.environ, "ETL_LEASE_OWNER": OWNER, "ETL_FAILPOINTS": point}
    proc = etlctl_run_stage("kv", stage, kv["store"], run_id=RUN_ID, start=DAY_A, end=DAY_B, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"{point} never fired: rc={proc.returncode} {proc.stderr[-800:]}"


def edit(kv: dict[str, Any], old: str, new: str, sql: bool = False) -> None:
    path = kv["include"] / ("sql/kv/extract.sql" if sql else "entities/kv.yaml")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def checkpoints(stage: str) -> list[Any]:
    return open_run_store().checkpoints("kv", RUN_ID, stage)


CHANGES = ["unchanged", "query", "chunk_rows", "interval"]


@pytest.mark.parametrize("change", CHANGES)
def test_an_extract_killed_then_retried_under_another_plan_starts_afresh(change: str, kv: dict[str, Any]) -> None:
    in_process(kv, "cleanup")
    killed(kv, "extract", "extract.checkpointed=kill@2")
    before = checkpoints("extract")
    assert [c.chunk for c in before] == ["000000", "000001"]
    end, want = DAY_B, expected()
    if change == "query":
        edit(kv, SQL, SQL + " AND v % 3 <> 0", sql=True)
        want = expected(keep=lambda v: v % 3 != 0)
    elif change == "chunk_rows":
        edit(
            kv,
            "source: {conn_id: kv_src, extract_sql: kv/extract.sql, chunk_rows: 1000}",
            "source: {conn_id: kv_src, extract_sql: kv/extract.sql, chunk_rows: 1500}",
        )
    elif change == "interval":
        end, want = DAY_C, expected(days=2)  # day B's newer rows of K0000..K2999 fall in the first chunks

    stats = in_process(kv, "extract", end)
    after = checkpoints("extract")
    assert len({c.plan for c in after}) == 1
    if change == "unchanged":
        assert stats["details"]["resumed_chunks"] == 2
        assert after[:2] == before
    else:
        assert stats["details"]["resumed_chunks"] == 0
        assert after[0].plan != before[0].plan
    sizes = [c.data["rows"] for c in after]
    assert sizes[-1] == 0 and after[-1].chunk == "null"  # no NULL keys here
    per_chunk = 1500 if change == "chunk_rows" else 1000
    assert all(n == per_chunk for n in sizes[:-2]) and 0 < sizes[-2] <= per_chunk, sizes
    assert stats["rows_out"] == sum(sizes)
    for stage in ["load_staging", "dedupe", "load_target"]:
        in_process(kv, stage, end)
    assert kv["backend"].target() == want


@pytest.mark.parametrize("change", ["unchanged", "query"])
def test_load_staging_killed_then_a_new_extract_discards_its_parts(change: str, kv: dict[str, Any]) -> None:
    """A load_staging checkpoint names a part of one extract: after the extract is redone (another
    manifest), the retry reloads staging from nothing."""
    in_process(kv, "cleanup")
    in_process(kv, "extract")
    killed(kv, "load_staging", "load_staging.checkpointed=kill@2")
    assert len(checkpoints("load_staging")) == 2
    want = expected()
    if change == "query":
        edit(kv, SQL, SQL + " AND v % 3 <> 0", sql=True)
        want = expected(keep=lambda v: v % 3 != 0)
        in_process(kv, "extract")  # it had succeeded: redone from the start
    stats = in_process(kv, "load_staging")
    assert stats["details"]["resumed_parts"] == (2 if change == "unchanged" else 0)
    assert stats["rows_out"] == len(want)  # one row per key in this source
    for stage in ["dedupe", "load_target"]:
        in_process(kv, stage)
    assert kv["backend"].target() == want


@pytest.mark.parametrize("change", ["unchanged", "chunk_rows"])
def test_load_target_killed_then_retried_with_another_chunk_size_starts_afresh(change: str, kv: dict[str, Any]) -> None:
    for stage in ["cleanup", "extract", "load_staging", "dedupe"]:
        in_process(kv, stage)
    killed(kv, "load_target", "load_target.checkpointed=kill@2")
    assert len(checkpoints("load_target")) == 2
    if change == "chunk_rows":
        edit(kv, "table: kv_company, chunk_rows: 1000}", "table: kv_company, chunk_rows: 2000}")
    stats = in_process(kv, "load_target")
    after = checkpoints("load_target")
    if change == "unchanged":
        assert stats["details"]["resumed_chunks"] == 2
        assert [c.data["end"] - c.data["start"] for c in after] == [1000] * 6  # 5300 staged rows
    else:
        assert stats["details"]["resumed_chunks"] == 0
        assert [c.data["end"] - c.data["start"] for c in after] == [2000] * 3
    assert stats["details"]["chunks"] == len(after)
    assert sum(c.data["written"] for c in after) == stats["rows_out"] == ROWS_A
    assert kv["backend"].target() == expected()


KEY_VALUES = [
    7,
    True,  # a bool key binds as the integer it is
    Decimal("12.30"),
    0.1,
    dt.datetime(2026, 1, 2, 3, 4, 5, 678),
    dt.date(2026, 1, 2),
    b"\x00\xffkey",
    "K0001 ",
    "",
]


# Plain ids (no quotes, backslashes or brackets): mutmut passes them back to pytest as node ids.
KEY_IDS = ["int", "bool", "decimal", "float", "datetime", "date", "bytes", "str-trailing-space", "str-empty"]


@pytest.mark.parametrize("value", KEY_VALUES, ids=KEY_IDS)
def test_a_checkpointed_key_binds_as_the_same_type_on_resume(value: Any) -> None:
    """A chunk bound survives the checkpoint (JSON) with its type and value, so a resumed extract compares
    the key as the first attempt did."""
    stored = json.loads(json.dumps(encode_key(value)))
    back = decode_key(stored)
    want = int(value) if isinstance(value, bool) else value
    assert back == want and type(back) is type(want)
    assert len(stored) == 1  # one kind tag, one text
