"""load_target: chunked upsert from staging into the target, sanitizers applied."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from entity_etl.config.model import EntityConfig
from entity_etl.runtime import chunks, failpoints, fencing, staging_ledger, target_table
from entity_etl.runtime.databases import Database
from entity_etl.runtime.progress import Progress
from entity_etl.runtime.stages.context import ROW_ID, Attempt, RunContext, StageError, count_rows, previous_stats


def _sanitized(q: Callable[[str], str], name: str, sanitizers: list[str]) -> str:
    expr = q(name)
    for step in sanitizers:
        expr = {
            "trim": f"TRIM({expr})",
            "null_if_empty": f"NULLIF({expr}, '')",
            "upper": f"UPPER({expr})",
            "lower": f"LOWER({expr})",
        }[step]
    return expr


def _chained_staging(db: Database, config: EntityConfig) -> int:
    """The load number of a staging table that every stage before load_target has run on, or refuse."""
    owner = staging_ledger.require_staging(db, config)
    missing = [
        stage
        for stage, done in (("translate", owner.translated or not config.translate.enabled), ("dedupe", owner.deduped))
        if not done
    ]
    if missing:
        raise staging_ledger.LedgerError(
            f"staging {config.staging.table!r} was reloaded (load {owner.load_seq}) "
            f"and {' and '.join(missing)} did not run on it since; nothing was written to {config.target.table}: "
            f"run {', '.join(missing)} again first (in Airflow: Clear load_staging with its downstream tasks)"
        )
    return owner.load_seq


def load_target(ctx: RunContext, attempt: Attempt) -> dict[str, Any]:
    config = ctx.config
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        load_seq = _chained_staging(db, config)
        key = [config.column(k).target_name for k in config.dedupe.key]
        db.execute(db.create_table_sql(config.target.table, [(c.target_name, c.type) for c in config.columns], key=key))
        db.commit()
        try:
            target_table.check_target(db, config)
        except target_table.TargetTableError as exc:
            raise StageError(str(exc)) from None
        _refuse_null_keys(db, config)
        q, staging = db.quote, db.table(config.staging.table)
        low, high = db.query(f"SELECT MIN({q(ROW_ID)}), MAX({q(ROW_ID)}) FROM {staging}")[0]
        rows_in = count_rows(db, config.staging.table)
        upsert = _upsert_statements(db, config, key)
        staged = previous_stats(ctx, "load_staging") or {}
        plan = chunks.plan_id(
            "load_target",
            staged.get("details", {}).get("load_id"),
            load_seq,
            config.target.chunk_rows,
            config.target.table,
            upsert.sql,
        )
        checkpoints = chunks.StageCheckpoints(
            ctx.run_store,
            ctx.entity,
            ctx.run_id,
            "load_target",
            plan,
            fresh=not attempt.resume,
            guard=attempt.lease_guard,
        )
        resumed = len(checkpoints.done)
        written = sum(int(c.data["written"]) for c in checkpoints.done)
        kept = sum(int(c.data.get("kept", 0)) for c in checkpoints.done)
        progress = Progress(f"{ctx.entity}: load_target", counts_bytes=False)
        interval = (ctx.interval_start, ctx.interval_end)
        if low is None:
            progress.plan(0, resumed=resumed, interval=interval)
        else:
            more_written, more_kept = _upsert_chunks(
                db, config, attempt, upsert, checkpoints, int(low), int(high), progress, interval
            )
            written, kept = written + more_written, kept + more_kept
        target_rows = count_rows(db, config.target.table)
    return {
        "rows_in": rows_in,
        "rows_out": written,
        "details": {
            "target_rows": target_rows,
            "chunks": len(checkpoints.done),
            "resumed_chunks": resumed,
            "target": config.target.table,
            **({"kept_newer" if config.dedupe.keep == "newest" else "kept_older": kept} if upsert.kept_sql else {}),
        },
    }


def _refuse_null_keys(db: Database, config: EntityConfig) -> None:
    q, staging = db.quote, db.table(config.staging.table)
    null_keys = " OR ".join(f"{q(k)} IS NULL" for k in config.dedupe.key)
    bad = int(db.query(f"SELECT COUNT(*) FROM {staging} WHERE {null_keys}")[0][0])
    if bad:
        raise StageError(
            f"{config.entity}: load_target: {bad} staged rows have a NULL in the key "
            f"{list(config.dedupe.key)}; nothing was written to {config.target.table}"
        )


@dataclass(frozen=True)
class _Upsert:
    """The statements of one target chunk, bound to its row-id range ``[start, end)``."""

    #: The upsert from staging (sanitizers applied).
    sql: str
    #: Counts the rows the target keeps against the incoming ones (a guarded upsert); None: unguarded.
    kept_sql: str | None
    #: Counts the staged rows of the chunk.
    count_sql: str


def _upsert_statements(db: Database, config: EntityConfig, key: list[str]) -> _Upsert:
    q, p, staging = db.quote, db.placeholder(), db.table(config.staging.table)
    guard = target_table.guard(config)
    exprs = ", ".join(_sanitized(q, c.name, list(c.sanitize)) for c in config.columns)
    sql = db.upsert_sql(
        config.target.table,
        [c.target_name for c in config.columns],
        key,
        f"SELECT {exprs} FROM {staging} WHERE {q(ROW_ID)} >= {p} AND {q(ROW_ID)} < {p} ORDER BY {q(ROW_ID)}",
        guard=guard,
    )
    kept_sql = None
    if guard:
        sanitizers: dict[str, list[str]] = {c.name: list(c.sanitize) for c in config.columns}
        kept_sql = target_table.kept_sql(
            db,
            config,
            lambda name: _sanitized(lambda n: f"s.{q(n)}", name, sanitizers[name]),
            f"s.{q(ROW_ID)} >= {p} AND s.{q(ROW_ID)} < {p}",
        )
    count_sql = f"SELECT COUNT(*) FROM {staging} WHERE {q(ROW_ID)} >= {p} AND {q(ROW_ID)} < {p}"
    return _Upsert(sql, kept_sql, count_sql)


def _upsert_chunks(
    db: Database,
    config: EntityConfig,
    attempt: Attempt,
    upsert: _Upsert,
    checkpoints: chunks.StageCheckpoints,
    low: int,
    high: int,
    progress: Progress,
    interval: tuple[Any, Any],
) -> tuple[int, int]:
    """Upsert the chunks not yet checkpointed; return the rows written and kept by them.

    Chunks by row id, each committed and checkpointed: bounded transactions on RDS, and a rerun
    resumes after the last checkpointed chunk. The upsert makes the redo of a chunk that committed
    but was not checkpointed converge to the same contents, never duplicate. ``progress`` says the plan
    (with the run's ``interval``) and each chunk.
    """
    written = kept = 0
    last = checkpoints.last
    start = int(last.data["end"]) if last else low
    index = int(last.chunk) + 1 if last else 0
    step = config.target.chunk_rows
    progress.plan(max(0, -(-(high - start + 1) // step)), resumed=len(checkpoints.done), interval=interval)
    while start <= high:
        end = start + step
        # Counted before the upsert, in its transaction: the rows the target keeps against them.
        n_kept = target_table.count_kept(db, upsert.kept_sql, [start, end]) if upsert.kept_sql else 0
        db.execute(upsert.sql, [start, end])
        n = int(db.query(upsert.count_sql, [start, end])[0][0])
        failpoints.hit("load_target.chunk_written")  # upserted, not yet committed
        fencing.check(attempt.fence, db)
        db.commit()
        failpoints.hit("load_target.chunk_committed")
        checkpoints.record(chunks.chunk_id(index), {"start": start, "end": end, "written": n, "kept": n_kept})
        written += n
        kept += n_kept
        progress.chunk_done(n, 0)
        index += 1
        start = end
    return written, kept
