"""dedupe: DELETE all but one row per business key, in SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from entity_etl.config.model import EntityConfig
from entity_etl.runtime import failpoints, fencing, staging_ledger
from entity_etl.runtime.databases import Database
from entity_etl.runtime.stages.context import ROW_ID, Attempt, RunContext, count_rows


def dedupe_order(config: EntityConfig, q: Callable[[str], str]) -> str:
    d = config.dedupe
    row = q(ROW_ID)
    if d.keep == "newest":
        return f"{q(d.order_by or '')} DESC, {row} DESC"
    if d.keep == "oldest":
        return f"{q(d.order_by or '')} ASC, {row} ASC"
    return f"{row} ASC" if d.keep == "first" else f"{row} DESC"


def dedupe_sql(db: Database, config: EntityConfig) -> str:
    q = db.quote
    staging = db.table(config.staging.table)
    keys = ", ".join(q(k) for k in config.dedupe.key)
    ranked = (
        f"SELECT {q(ROW_ID)}, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {dedupe_order(config, q)}) AS rn "
        f"FROM {staging}"
    )
    return db.delete_rows_sql(staging, ROW_ID, f"SELECT {q(ROW_ID)} FROM ({ranked}) ranked WHERE rn > 1")


def dedupe(ctx: RunContext, attempt: Attempt) -> dict[str, Any]:
    config = ctx.config
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        owner = staging_ledger.require_staging(db, config)
        before = count_rows(db, config.staging.table)
        removed = db.execute(dedupe_sql(db, config))
        failpoints.hit("dedupe.deleted")  # deleted, not yet committed
        staging_ledger.mark(db, config, "deduped_seq", owner.load_seq)
        fencing.check(attempt.fence, db)
        db.commit()
        after = count_rows(db, config.staging.table)
    return {
        "rows_in": before,
        "rows_out": after,
        "duplicates_removed": removed,
        "details": {"key": list(config.dedupe.key), "keep": config.dedupe.keep, "load_seq": owner.load_seq},
    }
