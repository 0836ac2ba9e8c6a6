"""cleanup: drop and recreate the staging table from the entity's columns."""

from __future__ import annotations

from typing import Any

from entity_etl.runtime import staging_ledger
from entity_etl.runtime.stages.context import Attempt, RunContext, count_rows, staging_columns


def cleanup(ctx: RunContext, attempt: Attempt) -> dict[str, Any]:
    config = ctx.config
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        staging_ledger.own_staging(db, config)  # refuses a table this entity does not own
        before = count_rows(db, config.staging.table)
        staging_ledger.next_load(db, config)
        db.execute(f"DROP TABLE IF EXISTS {db.table(config.staging.table)}")
        db.execute(db.create_table_sql(config.staging.table, staging_columns(config), row_id=True))
        db.commit()
    return {"rows_in": before, "rows_out": 0, "details": {"rows_dropped": before}}
