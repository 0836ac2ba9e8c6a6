"""The entity's query as users write it: a trailing ``;``, a trailing ``-- comment``, surrounding blank
lines; and the plan fingerprint of chunked stages (``chunks.plan_id``) over the values plans hold."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from entity_etl.runtime import chunks, sql_text
from support.entity_files import make_include, write_entity
from support.kv_entity import DAY_A, ENTITY, SQL, Backend, backend, ts
from support.pipeline import context, run_all

__all__ = ["backend"]  # the SQLite / MariaDB fixture of kv_entity.py

ENDINGS = {
    "semicolon": SQL + ";",
    "semicolon and blanks": "\n\n  " + SQL + " ;\n\n",
    "line comment": SQL + " -- the day's rows",
    "semicolon then comment": SQL + "; -- the day's rows\n",
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_query_ending_in_a_semicolon_or_comment_extracts_every_row(
    ending: str, backend: Backend, tmp_path: Path
) -> None:
    rows = [(f"k{i:04d}", f"v{i}", i, None, None, ts(DAY_A, i % 600)) for i in range(2500)]
    backend.add_source(rows)
    include = make_include(tmp_path)
    write_entity(include, "kv", ENTITY.format(keep="newest", translate="false"), ENDINGS[ending])
    stats = run_all(context(include, "kv", tmp_path / "store", start=DAY_A, end=DAY_A + dt.timedelta(days=1)))
    assert stats["extract"].rows_out == len(rows)
    assert len(backend.target()) == len(rows)


def test_plan_id_is_a_stable_fingerprint_of_every_part() -> None:
    parts = ("extract", "s3://b/p", {"b": 1, "a": dt.date(2026, 1, 2)}, Decimal("1.10"), [1, "x"])
    assert chunks.plan_id(*parts) == chunks.plan_id(*parts)
    assert chunks.plan_id("extract", "s3://b/p", {"a": dt.date(2026, 1, 2), "b": 1}, Decimal("1.10"), [1, "x"]) == (
        chunks.plan_id(*parts)
    )  # the order of a mapping's keys does not matter
    changed = [
        ("extract", "s3://b/q", *parts[2:]),
        (*parts[:2], {"b": 1, "a": dt.date(2026, 1, 3)}, *parts[3:]),
        (*parts[:3], Decimal("1.11"), parts[4]),
        (*parts[:4], [1, "y"]),
    ]
    assert len({chunks.plan_id(*p) for p in changed} | {chunks.plan_id(*parts)}) == 5
    assert len(chunks.plan_id(*parts)) == 16


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1;", "SELECT 1"),
        ("SELECT 1 ; ;\n", "SELECT 1  \n"),
        ("SELECT 1; -- done\n", "SELECT 1 -- done\n"),
        ("SELECT 1 /* done; */;", "SELECT 1 /* done; */"),
        ("SELECT ';' AS s", "SELECT ';' AS s"),
        ("SELECT 'it''s;' AS s;", "SELECT 'it''s;' AS s"),
        ("SELECT 'a\\';' AS s", "SELECT 'a\\';' AS s"),
        ("SELECT `a;b` FROM t -- x;", "SELECT `a;b` FROM t -- x;"),
        ('SELECT "x;" # note;\n', 'SELECT "x;" # note;\n'),
        ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ 1;", "SELECT /*+ MAX_EXECUTION_TIME(1000) */ 1"),
        ("SELECT 1; SELECT 2", "SELECT 1; SELECT 2"),  # two statements stay two: the server refuses them
    ],
)
def test_only_the_semicolons_that_end_the_statement_go(sql: str, expected: str) -> None:
    assert sql_text.without_statement_end(sql) == expected
