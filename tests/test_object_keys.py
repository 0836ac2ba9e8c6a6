"""``runtime/object_keys.py``: the same object keys as the run context the stages write with."""

from __future__ import annotations

from pathlib import Path

import pytest

from entity_etl.runtime import object_keys
from support.entity_files import ROOT
from support.pipeline import context

RUN_IDS = [
    "scheduled__2026-01-01T00:00:00+00:00",
    "manual__2026-01-01T00:00:00.123456+00:00",
    "r1",
    "a/b c?d" + "x" * 150,
]


@pytest.mark.parametrize("run_id", RUN_IDS)
def test_the_keys_are_the_run_contexts(tmp_path: Path, run_id: str) -> None:
    ctx = context(ROOT / "include", "de", tmp_path / "objects", run_id=run_id)
    assert object_keys.run_key(run_id) == ctx.run_key
    assert object_keys.extract_prefix("de", run_id) == ctx.extract_prefix
    assert object_keys.manifest_key("de", run_id) == ctx.manifest_key
    for stage in ("extract", "translate", "load_staging", "load_target"):
        assert object_keys.stats_key("de", run_id, stage) == ctx.stats_key(stage)


def test_distinct_run_ids_that_read_alike_get_distinct_keys() -> None:
    assert object_keys.stats_key("de", "a/b", "extract") != object_keys.stats_key("de", "a?b", "extract")
    assert (
        object_keys.stats_key("de", "r1", "extract") == "runs/de/" + object_keys.run_key("r1") + "/stats/extract.json"
    )
