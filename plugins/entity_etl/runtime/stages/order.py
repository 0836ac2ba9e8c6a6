"""The stage order guard of a hand run: ``etlctl run-stage`` refuses a stage whose earlier stages
(the entity's ``stages`` list) have not succeeded for that run in the run store.

It is a friendlier, earlier guard than the staging ledger (which refuses stale staging whatever
the order): one line naming the stage that is missing. An extract split into partitions counts as
succeeded when every partition record (``extract.pNN``) has. ``etlctl run-stage --force`` skips it.
"""

from __future__ import annotations

from entity_etl.runtime.stages.context import RunContext, partition_stage

DONE = ("succeeded", "skipped")


def _state(ctx: RunContext, stage: str) -> str | None:
    """``None`` if ``stage`` is done for the run, else what the store holds for it."""
    assert ctx.run_store is not None
    record = ctx.run_store.get(ctx.entity, ctx.run_id, stage)
    if record is not None and record.status in DONE:
        return None
    count = ctx.config.extract_partitions
    if stage == "extract" and count > 1:
        parts = [ctx.run_store.get(ctx.entity, ctx.run_id, partition_stage(i, count)) for i in range(count)]
        if all(p is not None and p.status in DONE for p in parts):
            return None
    return "no record" if record is None else f"{record.status}, attempt {record.attempt}"


def unfinished_predecessor(ctx: RunContext, stage: str) -> str | None:
    """One line naming the first earlier stage not done for ``ctx.run_id``, or ``None``."""
    stages = ctx.config.stages
    if ctx.run_store is None or stage not in stages:
        return None
    for earlier in stages[: stages.index(stage)]:
        state = _state(ctx, earlier)
        if state is not None:
            return (
                f"{ctx.entity}: {stage}: the earlier stage {earlier} has not succeeded for run {ctx.run_id!r} "
                f"({state}); run it first, or pass --force"
            )
    return None
