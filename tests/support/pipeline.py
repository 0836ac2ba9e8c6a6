"""Run an entity's stages in-process, the way ``etlctl run-stage`` does, or through ``etlctl`` itself, for tests."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from entity_etl.runtime.context import build_context
from entity_etl.runtime.stages import RunContext, run_stage
from entity_etl.runtime.stats import StageStats

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def context(
    include: Path,
    entity: str,
    store: Path,
    run_id: str = "scheduled__2026-01-01T00:00:00+00:00",
    start: dt.datetime = START,
    end: dt.datetime = END,
    **kwargs: Any,
) -> RunContext:
    return build_context(
        entity=entity,
        run_id=run_id,
        interval_start=start,
        interval_end=end,
        object_store_url=str(store),
        entities_dir=include / "entities",
        sql_dir=include / "sql",
        **kwargs,
    )


def run_all(ctx: RunContext, stages: list[str] | None = None) -> dict[str, StageStats]:
    return {stage: run_stage(ctx, stage) for stage in (stages or ctx.config.stages)}


def etlctl_run_stage(
    entity: str,
    stage: str,
    store: Path,
    *,
    run_id: str = "r1",
    start: dt.datetime = START,
    end: dt.datetime = END,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    force: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``etlctl run-stage`` in a child process, as a user runs it (``env``: the whole environment, or
    None for this process's; ``force``: ``--force``, a stage run out of order on purpose)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "entity_etl.cli",
            "run-stage",
            "--entity",
            entity,
            "--stage",
            stage,
            "--run-id",
            run_id,
            "--interval-start",
            start.isoformat(),
            "--interval-end",
            end.isoformat(),
            "--object-store",
            str(store),
            *(["--force"] if force else []),
        ],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=timeout,
    )
