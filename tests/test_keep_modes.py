"""Each ``dedupe.keep`` mode with real duplicates and ties on ``order_by``, on SQLite and MariaDB.

The rows of one key arrive in a known order (staging's ``_etl_row``); the test asserts which one
survives dedupe in staging, which one load_target writes, and what a second run of another interval
does to that target: ``newest``/``oldest`` keep the target monotonic in ``order_by`` (a tie goes to
the incoming row under ``newest`` and stays under ``oldest``; NULL is the smallest value), while
``first``/``last`` ignore ``order_by`` and replace. The expected survivors are written out by hand
from those rules, not computed by the code under test.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from support.kv_entity import DAY_A, DAY_B, Backend, Row, backend, include_for, ts
from support.pipeline import context, run_all

__all__ = ["backend"]  # the SQLite / MariaDB fixture of kv_entity.py

# (key, label, order_by value), in load order: the keys interleave, each key's rows stay in this order.
RUN_1: list[tuple[str, str, int | None]] = [
    ("A", "a1", 5),
    ("B", "b1", 7),
    ("C", "c1", 1),
    ("D", "d1", None),
    ("E", "e1", None),
    ("F", "f1", 6),
    ("G", "g1", 2),
    ("A", "a2", 3),  # A: no tie
    ("B", "b2", 7),  # B: a tie at the top
    ("C", "c2", 9),
    ("D", "d2", 4),
    ("E", "e2", None),  # E: only NULLs, a tie
    ("G", "g2", 8),
    ("B", "b3", 2),
    ("C", "c3", 1),  # C: a tie at the bottom
    ("D", "d3", None),  # D: NULLs around a value
    ("G", "g3", 8),  # G: a tie at the top between the ends
    ("G", "g4", 3),
]
# The label that survives dedupe of RUN_1, per keep mode (newest: largest order_by, then the later row;
# oldest: smallest, then the earlier row; NULL smallest; first/last: load order only).
SURVIVORS_1: dict[str, dict[str, str]] = {
    "newest": {"A": "a1", "B": "b2", "C": "c2", "D": "d2", "E": "e2", "F": "f1", "G": "g3"},
    "oldest": {"A": "a2", "B": "b3", "C": "c1", "D": "d1", "E": "e1", "F": "f1", "G": "g1"},
    "first": {"A": "a1", "B": "b1", "C": "c1", "D": "d1", "E": "e1", "F": "f1", "G": "g1"},
    "last": {"A": "a2", "B": "b3", "C": "c3", "D": "d3", "E": "e2", "F": "f1", "G": "g4"},
}
# A second run (the next interval) against that target, with duplicates of its own and a new key H.
RUN_2: list[tuple[str, str, int | None]] = [
    ("A", "A'1", 5),
    ("B", "B'1", 1),
    ("C", "C'1", 1),
    ("D", "D'1", None),
    ("E", "E'1", 3),
    ("H", "h1", 1),
    ("B", "B'2", 8),
    ("E", "E'2", None),
]
SURVIVORS_2: dict[str, dict[str, str]] = {
    "newest": {"A": "A'1", "B": "B'2", "C": "C'1", "D": "D'1", "E": "E'1", "H": "h1"},
    "oldest": {"A": "A'1", "B": "B'1", "C": "C'1", "D": "D'1", "E": "E'2", "H": "h1"},
    "first": {"A": "A'1", "B": "B'1", "C": "C'1", "D": "D'1", "E": "E'1", "H": "h1"},
    "last": {"A": "A'1", "B": "B'2", "C": "C'1", "D": "D'1", "E": "E'2", "H": "h1"},
}
# The target after both runs. newest: A ties 5 = 5 (incoming wins), B 8 > 7 replaces, C 1 < 9 and
# D NULL < 4 keep the target's, E 3 > NULL replaces. oldest: A 5 > 3 keeps, B 1 < 2 replaces, C 1 = 1,
# D NULL = NULL and E NULL = NULL are ties the target keeps. first/last: the second run's row, always.
TARGET_2: dict[str, dict[str, str]] = {
    "newest": {"A": "A'1", "B": "B'2", "C": "c2", "D": "d2", "E": "E'1", "F": "f1", "G": "g3", "H": "h1"},
    "oldest": {"A": "a2", "B": "B'1", "C": "c1", "D": "d1", "E": "e1", "F": "f1", "G": "g1", "H": "h1"},
    "first": {**SURVIVORS_1["first"], **SURVIVORS_2["first"]},
    "last": {**SURVIVORS_1["last"], **SURVIVORS_2["last"]},
}
# The staged rows of the second run that the target kept against (kept_newer / kept_older).
KEPT_2 = {"newest": 2, "oldest": 4}  # newest: C, D; oldest: A, C, D, E

KEEPS = ["newest", "oldest", "first", "last"]
FILLER = 2100


def source(rows: list[tuple[str, str, int | None]], day: dt.datetime) -> list[Row]:
    stamp = [(day + dt.timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(len(rows))]
    return [(key, label, v, None, None, stamp[i]) for i, (key, label, v) in enumerate(rows)]


def versions(rows: list[tuple[str, str, int | None]]) -> dict[str, int | None]:
    return {label: v for _, label, v in rows}


def staged(backend: Backend) -> list[tuple[str, str]]:
    """Staging's (key, label) in ``_etl_row`` order."""
    return [(r[0], r[1]) for r in backend.sql("SELECT id, val FROM stg_kv ORDER BY _etl_row")]


def run_keep(
    include: Path, tmp_path: Path, backend: Backend, day: dt.datetime, run_id: str, rows: list[Any]
) -> tuple[dict[str, Any], list[tuple[str, str]], list[tuple[str, str]]]:
    """cleanup, extract, load_staging; staging; dedupe; staging; load_target."""
    ctx = context(include, "kv", tmp_path / "store", run_id=run_id, start=day, end=day + dt.timedelta(days=1))
    stats = run_all(ctx, ["cleanup", "extract", "load_staging"])
    before = staged(backend)
    stats.update(run_all(ctx, ["dedupe"]))
    after = staged(backend)
    stats.update(run_all(ctx, ["load_target"]))
    return stats, before, after


def expected_target(survivors: dict[str, str], all_rows: list[Any]) -> dict[str, tuple[Any, ...]]:
    v = versions(all_rows)
    return {key: (label, v[label], None, None) for key, label in survivors.items()}


@pytest.mark.parametrize("keep", KEEPS)
def test_each_keep_mode_keeps_the_documented_row_through_dedupe_load_and_a_second_run(
    keep: str, backend: Backend, tmp_path: Path
) -> None:
    include = include_for(tmp_path, keep)
    # Single-row keys between C and D: the extract takes three parts (cut by key, so one key's rows
    # stay in one part) and load_target three chunks.
    fillers = [(f"C-{i:04d}", f"filler {i}", i % 3 or None) for i in range(FILLER)]
    backend.add_source(source(RUN_1 + fillers, DAY_A) + source(RUN_2, DAY_B))
    survivors_1 = {**SURVIVORS_1[keep], **{key: label for key, label, _ in fillers}}

    stats, before, after = run_keep(include, tmp_path, backend, DAY_A, "rA", RUN_1)
    # Each key's rows reach staging in the order of the source (the premise of first/last and the ties).
    for key in {k for k, _, _ in RUN_1}:
        assert [lb for k, lb in before if k == key] == [lb for k, lb, _ in RUN_1 if k == key], key
    assert sorted(after) == sorted(survivors_1.items())
    assert stats["dedupe"].duplicates_removed == len(RUN_1) - len(SURVIVORS_1[keep]) == 11
    assert (stats["dedupe"].rows_in, stats["dedupe"].rows_out) == (len(before), len(after))
    # The load dedupe ran on: load_staging's (the ledger counts cleanup's and load_staging's loads: 2).
    loaded = stats["load_staging"].details["load_seq"]
    assert stats["dedupe"].details == {"key": ["id"], "keep": keep, "load_seq": loaded} and loaded == 2
    assert stats["extract"].details["parts"] == 3
    assert stats["load_target"].details["chunks"] == 3
    assert backend.target() == expected_target(survivors_1, RUN_1 + fillers)
    kept_name = {"newest": "kept_newer", "oldest": "kept_older"}.get(keep)
    if kept_name:
        assert stats["load_target"].details[kept_name] == 0
    else:
        assert not any(k.startswith("kept_") for k in stats["load_target"].details)

    stats, _, after = run_keep(include, tmp_path, backend, DAY_B, "rB", RUN_2)
    assert sorted(after) == sorted(SURVIVORS_2[keep].items())
    assert stats["dedupe"].details["load_seq"] == stats["load_staging"].details["load_seq"] == 4
    assert backend.target() == expected_target({**survivors_1, **TARGET_2[keep]}, RUN_1 + fillers + RUN_2)
    assert stats["load_target"].rows_out == len(SURVIVORS_2[keep])  # every survivor was offered
    if kept_name:
        assert stats["load_target"].details[kept_name] == KEPT_2[keep]


@pytest.mark.parametrize("keep", ["newest", "oldest"])
def test_the_target_guard_and_dedupe_agree_on_ties_and_nulls(keep: str, backend: Backend, tmp_path: Path) -> None:
    """One key's rows loaded one run at a time give the same target row as all of them in one run:
    the upsert's guard orders ties and NULLs as dedupe's ROW_NUMBER does."""
    include = include_for(tmp_path, keep)
    rows = [("K", f"k{i}", v) for i, v in enumerate([None, 4, None, 4, 2, 4, None])]
    backend.add_source(
        [("K", label, v, None, None, ts(DAY_A + dt.timedelta(days=i), 0)) for i, (_, label, v) in enumerate(rows)]
    )
    for i in range(len(rows)):
        day = DAY_A + dt.timedelta(days=i)
        run_keep(include, tmp_path, backend, day, f"r{i}", rows[i : i + 1])
    one_by_one = backend.target()
    expected = {"newest": "k5", "oldest": "k0"}[keep]  # newest: the last 4; oldest: the first NULL
    assert one_by_one == {"K": (expected, versions(rows)[expected], None, None)}

    backend.sql("DELETE FROM kv_company")
    ctx = context(include, "kv", tmp_path / "store", run_id="all", start=DAY_A, end=DAY_A + dt.timedelta(days=7))
    run_all(ctx)
    assert backend.target() == one_by_one


@pytest.mark.parametrize("keep", ["first", "last"])
def test_the_order_guard_refuses_a_keep_mode_without_an_order(keep: str) -> None:
    """``first``/``last`` have no ``order_by`` to compare: asking for their guard is a programming error,
    named in the message."""
    from entity_etl.runtime.databases.base import replaces

    with pytest.raises(ValueError, match=rf"^keep {keep!r} has no order guard$"):
        replaces("incoming.v", "existing.v", keep)


def test_a_fault_before_dedupe_commits_leaves_staging_whole_and_the_retry_dedupes(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dedupe.deleted`` (the duplicates deleted, not yet committed) raised in-process: the delete rolls
    back, load_target still refuses the staging, and the retry removes the same rows."""
    from entity_etl.runtime import failpoints
    from entity_etl.runtime.stages import StageError, run_stage

    include = include_for(tmp_path, "newest")
    backend.add_source(source(RUN_1, DAY_A))
    ctx = context(include, "kv", tmp_path / "store", run_id="rA", start=DAY_A, end=DAY_A + dt.timedelta(days=1))
    run_all(ctx, ["cleanup", "extract", "load_staging"])
    before = staged(backend)
    monkeypatch.setenv(failpoints.ENV, "dedupe.deleted=raise@1")
    failpoints.reload()
    try:
        with pytest.raises((failpoints.InjectedFault, StageError), match=r"dedupe\.deleted"):
            run_stage(ctx, "dedupe")
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reload()
    assert staged(backend) == before
    with pytest.raises(StageError, match="dedupe did not run on it"):
        run_stage(ctx, "load_target")
    stats = run_stage(ctx, "dedupe")
    assert sorted(staged(backend)) == sorted(SURVIVORS_1["newest"].items())
    assert stats.duplicates_removed == len(before) - len(SURVIVORS_1["newest"]) == 11
