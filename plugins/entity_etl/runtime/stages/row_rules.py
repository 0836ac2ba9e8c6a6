"""``expect_rows``: the rows a run's extract must find, checked once the whole extract is known and
before its manifest is written, so a run that found too few rows loads nothing downstream."""

from __future__ import annotations

import logging

from entity_etl.runtime.stages.context import RunContext, StageError, partition_stage

log = logging.getLogger("entity_etl.runtime.stages")


def interval_text(ctx: RunContext) -> str:
    """The run's data interval as the extract binds it: ``[start, end)`` in UTC."""
    params = ctx.interval_params()
    return f"[{params['data_interval_start']}, {params['data_interval_end']})"


def check_minimum(ctx: RunContext, rows: int) -> None:
    """Raise :class:`StageError` when the whole extract's ``rows`` fall below ``expect_rows.min``.

    Before raising, the extract's parts and checkpoints are discarded: no manifest is written, so
    ``load_staging`` has nothing to load, and a retry reads the source again (its rows may have
    arrived since) instead of resuming the same empty chunks.
    """
    minimum = ctx.config.expect_rows.min
    if rows < minimum:
        _discard_extract(ctx)
        raise StageError(
            f"{ctx.entity}: extract: found {rows} row(s) in {interval_text(ctx)}, "
            f"fewer than expect_rows.min {minimum}; nothing was loaded"
        )


def empty_warning(ctx: RunContext, rows: int) -> str | None:
    """The warning for an extract that found no rows (logged at WARNING), or None."""
    if rows:
        return None
    warning = f"extract found no rows in {interval_text(ctx)}"
    log.warning("%s: %s", ctx.entity, warning)
    return warning


def _discard_extract(ctx: RunContext) -> None:
    count = ctx.config.extract_partitions
    if ctx.run_store is not None:
        for index in range(count):
            ctx.run_store.clear_checkpoints(ctx.entity, ctx.run_id, partition_stage(index, count))
    ctx.store.delete_prefix(ctx.extract_prefix)
