"""load_staging: the manifest's parts into staging (LOAD DATA LOCAL INFILE / batched inserts), one
committed and checkpointed load per part.

Each part is decompressed as it loads (``Database.load_csv_stream``: on MySQL a FIFO that a thread
fills, so the server parses while the part is gunzipped; no decompressed copy on disk).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from entity_etl.runtime import chunks, failpoints, fencing, gzip_parts, staging_ledger
from entity_etl.runtime.databases import Database
from entity_etl.runtime.progress import Progress
from entity_etl.runtime.stages.context import ROW_ID, Attempt, RunContext, StageError
from entity_etl.runtime.stages.manifest import read_manifest


def load_staging(ctx: RunContext, attempt: Attempt) -> dict[str, Any]:
    """The manifest's parts into staging, one committed and checkpointed load per part.

    A rerun of an unfinished load first deletes the rows past the last checkpointed part (a part
    that was loaded but not yet checkpointed), then loads the remaining parts.
    """
    config = ctx.config
    manifest = read_manifest(ctx)
    columns = manifest["columns"]
    if columns != [c.name for c in config.columns]:
        raise StageError(f"{config.entity}: load_staging: the extract's columns {columns} differ from the config")
    plan = chunks.plan_id("load_staging", manifest)
    checkpoints = chunks.StageCheckpoints(
        ctx.run_store, ctx.entity, ctx.run_id, "load_staging", plan, fresh=not attempt.resume, guard=attempt.lease_guard
    )
    done = {c.chunk: c for c in checkpoints.done}
    resumed = len(done)
    loaded = sum(int(c.data["rows"]) for c in done.values())
    size = 0
    with (
        ctx.connect(config.target.conn_id, local_infile=True) as db,
        tempfile.TemporaryDirectory(dir=ctx.scratch_dir) as scratch,
    ):
        staging_ledger.ensure_ledger(db)
        staging_ledger.own_staging(db, config)  # refuses a table this entity does not own
        load_seq = staging_ledger.next_load(db, config)  # dedupe and translate must run on this load again
        keep_upto = int(checkpoints.last.data["max_row"]) if checkpoints.last else 0
        fencing.check(attempt.fence, db)  # before the TRUNCATE, which commits by itself in MySQL
        db.delete_rows_after(config.staging.table, ROW_ID, keep_upto)
        db.commit()
        progress = Progress(f"{ctx.entity}: load_staging")
        todo = sum(1 for index in range(len(manifest["parts"])) if chunks.chunk_id(index) not in done)
        progress.plan(todo, resumed=resumed, interval=(ctx.interval_start, ctx.interval_end))
        for index, part in enumerate(manifest["parts"]):
            chunk = chunks.chunk_id(index)
            if chunk in done:
                continue
            gz_path = Path(scratch) / "part.csv.gz"
            ctx.store.get_file(part["key"], gz_path)
            gz_size = gz_path.stat().st_size
            size += gz_size
            n, max_row = _load_part(ctx, db, attempt, part, columns, gz_path)
            gz_path.unlink()
            failpoints.hit("load_staging.part_committed")
            checkpoints.record(chunk, {"key": part["key"], "rows": n, "max_row": max_row})
            loaded += n
            progress.chunk_done(n, gz_size)
        staging_ledger.mark(db, config, "loaded_seq", load_seq)
        fencing.check(attempt.fence, db)
        db.commit()
    return {
        "rows_in": manifest["rows"],
        "rows_out": loaded,
        "bytes": size,
        "details": {
            # Names this staging content: the same after a rerun that loaded nothing new (see translate).
            "load_id": chunks.plan_id(plan, [(c.chunk, c.written_at) for c in checkpoints.done]),
            "load_seq": load_seq,
            "parts": len(manifest["parts"]),
            "resumed_parts": resumed,
        },
    }


def _load_part(
    ctx: RunContext, db: Database, attempt: Attempt, part: dict[str, Any], columns: list[str], gz_path: Path
) -> tuple[int, int]:
    """Load one downloaded part into staging and commit it; return its rows and the highest row id after
    it. A damaged part rolls back what it loaded and is one line naming it."""
    config = ctx.config
    staging = db.table(config.staging.table)
    row = db.quote(ROW_ID)
    try:
        try:
            with gzip_parts.part_reader(gz_path) as source:
                n = db.load_csv_stream(config.staging.table, columns, source, gz_path.parent)
        except gzip_parts.READ_ERRORS as exc:
            raise StageError(
                f"{config.entity}: load_staging: {part['uri']} is not a readable gzip part ({exc}); rerun the extract"
            ) from None
        if n != part["rows"]:
            raise StageError(
                f"{config.entity}: load_staging: {part['uri']} loaded {n} rows, the manifest says {part['rows']}"
            )
        max_row = int(db.query(f"SELECT MAX({row}) FROM {staging}")[0][0] or 0)
        failpoints.hit("load_staging.part_loaded")  # loaded, not yet committed
        fencing.check(attempt.fence, db)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return n, max_row
