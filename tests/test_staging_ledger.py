"""The staging ledger (``etl_owned_tables``): stages only ever drop, empty or change a staging table the
pipeline created for their entity, and load_target only takes staging that every earlier stage ran
on. On SQLite and on MariaDB (tests/support/servers.py).

Configs here are changed with ``model_copy``, past the validator: ``etlctl validate`` refuses these
mistakes already (tests/test_config.py); the ledger is the last line, for a hand edit or a second
entity directory.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from entity_etl.runtime import failpoints
from entity_etl.runtime.stages import RunContext, StageError, run_stage
from entity_etl.runtime.staging_ledger import LEDGER_TABLE
from support.kv_entity import DAY_A, DAY_B, Backend, backend, include_for, ts
from support.pipeline import context, run_all

__all__ = ["backend"]  # the fixture, imported for its tests

ROWS = [
    ("K1", "old", 1, "Maschinenbau", None, ts(DAY_A, 0)),
    ("K1", "new", 2, "Maschinenbau", None, ts(DAY_A, 1)),
    ("K1", "older", 0, None, None, ts(DAY_A, 2)),  # last in extract order, not the newest
    ("K2", "only", 1, None, "Maschinenbau", ts(DAY_A, 3)),
]
GLOSSARY = {"de": {"Maschinenbau": "Mechanical engineering", "Mechanical engineering": "TRANSLATED TWICE"}}


def _ctx(tmp_path: Path, translate: bool = False, run_id: str = "r1") -> RunContext:
    include = include_for(tmp_path, translate=translate)
    return context(include, "kv", tmp_path / "store", run_id=run_id, start=DAY_A, end=DAY_B)


def _with(ctx: RunContext, **changes: Any) -> RunContext:
    """The same run with config fields changed past validation (``staging``/``target`` take dicts)."""
    config = ctx.config
    update: dict[str, Any] = {}
    for name, value in changes.items():
        if isinstance(value, dict):
            update[name] = getattr(config, name).model_copy(update=value)
        else:
            update[name] = value
    return dataclasses.replace(ctx, config=config.model_copy(update=update))


def _refused(ctx: RunContext, stage: str, match: str) -> str:
    with pytest.raises(StageError, match=match) as err:
        run_stage(ctx, stage)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{ctx.entity}: {stage}: ")
    return message


def _ledger(backend: Backend) -> list[tuple[Any, ...]]:
    return backend.sql(f"SELECT table_name, entity FROM {LEDGER_TABLE} ORDER BY table_name")


EXPECTED = {"K1": ("new", 2, "Maschinenbau", None), "K2": ("only", 1, None, "Maschinenbau")}


# -- ownership ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["KV_Company", "KV_COMPANY", "{schema}.kv_company", "{schema}.Kv_Company"])
def test_a_staging_table_that_is_the_target_in_another_spelling_is_never_dropped(
    spelling: str, backend: Backend, tmp_path: Path
) -> None:
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path)
    run_all(ctx)
    assert backend.target() == EXPECTED
    schema = backend.db if backend.kind == "mariadb" else "main"
    bad = _with(ctx, staging={"table": spelling.format(schema=schema)})
    for stage in ("cleanup", "load_staging", "dedupe", "load_target"):
        message = _refused(bad, stage, "are one table")
        assert "staging.table" in message and "target.table" in message
    assert backend.target() == EXPECTED


def test_a_table_the_pipeline_did_not_create_is_never_dropped_or_emptied(backend: Backend, tmp_path: Path) -> None:
    backend.sql("CREATE TABLE stg_kv (id VARCHAR(20), note VARCHAR(20))")
    backend.sql("INSERT INTO stg_kv VALUES ('keep', 'me')")
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path)
    run_stage(ctx, "extract")
    for stage in ("cleanup", "load_staging", "dedupe", "load_target"):
        message = _refused(ctx, stage, "did not create it")
        assert f"no row in {LEDGER_TABLE}" in message
    assert backend.sql("SELECT id, note FROM stg_kv") == [("keep", "me")]


def test_another_entitys_staging_or_target_is_refused(backend: Backend, tmp_path: Path) -> None:
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path)
    run_all(ctx)
    staged = backend.sql("SELECT COUNT(*) FROM stg_kv")[0][0]
    other = _with(ctx, entity="kv2", target={"table": "kv2_company"})  # shares kv's staging table
    run_stage(other, "extract")
    for stage in ("cleanup", "load_staging", "dedupe", "load_target"):
        _refused(other, stage, "is the staging table of entity 'kv'")
    assert backend.sql("SELECT COUNT(*) FROM stg_kv")[0][0] == staged
    # kv3's target is kv's staging table: load_target refuses before it creates or writes anything.
    third = _with(ctx, entity="kv3", staging={"table": "stg_kv3"}, target={"table": "STG_KV"})
    for stage in ("cleanup", "load_target"):
        _refused(third, stage, "target.table 'STG_KV' is the staging table of entity 'kv'")
    assert backend.sql("SELECT COUNT(*) FROM stg_kv")[0][0] == staged
    assert _ledger(backend) == [("stg_kv", "kv")]
    assert backend.target() == EXPECTED


def test_a_staging_table_from_before_the_ledger_is_adopted(backend: Backend, tmp_path: Path) -> None:
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path)
    run_all(ctx)
    backend.sql(f"DROP TABLE {LEDGER_TABLE}")  # as an older version left it: a staging table, no ledger
    run_all(dataclasses.replace(ctx, run_id="r2"))
    assert _ledger(backend) == [("stg_kv", "kv")]
    assert backend.target() == EXPECTED


# -- stage chain ----------------------------------------------------------------------------------------
def test_load_staging_rerun_after_dedupe_is_refused_by_load_target_until_dedupe_runs(
    backend: Backend, tmp_path: Path
) -> None:
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path)
    run_all(ctx)
    backend.sql("UPDATE kv_company SET label = 'before' WHERE company_id = 'K1'")  # to see any write
    before = backend.target()
    run_stage(ctx, "load_staging")  # "Clear" on load_staging alone: the duplicates are back
    assert backend.sql("SELECT COUNT(*) FROM stg_kv")[0][0] == len(ROWS)
    message = _refused(ctx, "load_target", "was reloaded")
    assert "dedupe did not run on it" in message and "Clear load_staging with its downstream tasks" in message
    assert backend.target() == before
    run_stage(ctx, "dedupe")
    run_stage(ctx, "load_target")
    assert backend.target() == EXPECTED


def test_dedupe_and_load_target_refuse_an_unfinished_load(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path)
    for stage in ("cleanup", "extract"):
        run_stage(ctx, stage)
    monkeypatch.setenv(failpoints.ENV, "load_staging.part_committed=raise@1")
    failpoints.reload()
    try:
        with pytest.raises((failpoints.InjectedFault, StageError)):
            run_stage(ctx, "load_staging")
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reload()
    for stage in ("dedupe", "load_target"):
        _refused(ctx, stage, "holds an unfinished load")
    for stage in ("load_staging", "dedupe", "load_target"):
        run_stage(ctx, stage)
    assert backend.target() == EXPECTED


def test_translate_runs_again_on_a_reloaded_staging_and_load_target_waits_for_it(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    glossary = tmp_path / "glossary.json"
    glossary.write_text(json.dumps(GLOSSARY))
    monkeypatch.setenv("ETL_GLOSSARY", str(glossary))
    monkeypatch.setenv("ETL_TRANSLATOR", "glossary")
    backend.add_source(ROWS)
    ctx = _ctx(tmp_path, translate=True)
    run_all(ctx)
    once = "Mechanical engineering"
    translated = {"K1": ("new", 2, once, None), "K2": ("only", 1, None, once)}
    assert backend.target() == translated
    assert run_stage(ctx, "translate").details["rerun"] == "no-op"  # the same load: never twice
    run_stage(ctx, "load_staging")  # reloaded: German again
    message = _refused(ctx, "load_target", "was reloaded")
    assert "translate and dedupe did not run on it" in message
    assert "run translate, dedupe again first" in message
    stats = run_stage(ctx, "translate")
    assert "rerun" not in stats.details and stats.rows_out == 3
    _refused(ctx, "load_target", "dedupe did not run on it")
    for stage in ("dedupe", "load_target"):
        run_stage(ctx, stage)
    assert backend.target() == translated
