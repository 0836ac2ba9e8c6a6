"""The extract's manifest: each partition's part list merged once all are done, and read back."""

from __future__ import annotations

import json
from typing import Any

from entity_etl.runtime import chunks
from entity_etl.runtime.stages.context import RunContext, StageError, partition_prefix, partition_stage
from entity_etl.runtime.stages.row_rules import check_minimum


def partition_plan(ctx: RunContext, sql: str, index: int) -> str:
    config = ctx.config
    return chunks.plan_id(
        partition_stage(index, config.extract_partitions),
        ctx.store.uri(partition_prefix(ctx, index)),
        sql,
        config.extract_chunk_key,
        config.source.chunk_rows,
        [c.name for c in config.columns],
        ctx.interval_params(),
        config.source.split_points,
    )


def merge_partitions(ctx: RunContext, sql: str, partials: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Write the manifest once every partition has its part list of this plan; return it (or None).

    A total below ``expect_rows.min`` raises instead, with no manifest written (:func:`check_minimum`).
    """
    config = ctx.config
    count = config.extract_partitions
    for index in range(count):
        if index in partials:
            continue
        try:
            partial = json.loads(ctx.store.get_bytes(f"{partition_prefix(ctx, index)}_partition.json"))
        except FileNotFoundError:
            return None  # another array child is still extracting; the last one writes the manifest
        if partial.get("plan") != partition_plan(ctx, sql, index):
            return None  # left by an extract of another plan: that partition has yet to run
        partials[index] = partial
    parts = [part for index in range(count) for part in partials[index]["parts"]]
    rows = sum(p["rows"] for p in parts)
    check_minimum(ctx, rows)
    manifest = {
        "entity": config.entity,
        "run_id": ctx.run_id,
        "interval": ctx.interval_params(),
        "columns": [c.name for c in config.columns],
        "format": "csv+gzip; NULL unquoted, values quoted",
        "chunk_key": config.extract_chunk_key,
        "split_points": list(config.source.split_points),
        "rows": rows,
        "parts": parts,
    }
    ctx.store.put_bytes(ctx.manifest_key, json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(ctx: RunContext) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads(ctx.store.get_bytes(ctx.manifest_key))
    except FileNotFoundError:
        raise StageError(
            f"{ctx.entity}: no finished extract for run {ctx.run_id!r} "
            f"({ctx.store.uri(ctx.manifest_key)} is missing): run the extract stage first"
        ) from None
    return manifest
