"""The six stages of an entity run, as plain functions over a :class:`RunContext`.

Every stage is idempotent for a given run: running it again gives the same result.

* cleanup       drop and recreate the staging table from the entity's columns
* extract       source query (bound to the run's data interval) -> gzip CSV parts + manifest
* load_staging  manifest parts -> staging (LOAD DATA LOCAL INFILE / batched inserts), atomically
* translate     distinct values of the configured columns, via a cache table, in place
* dedupe        DELETE all but one row per business key, in SQL
* load_target   chunked upsert from staging into the target, sanitizers applied
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entity_etl.config.model import EntityConfig
from entity_etl.runtime import (
    chunks,
    csv_codec,
    failpoints,
    fencing,
    staging_ledger,
    target_table,
    translation_cache,
)
from entity_etl.runtime.connections import ConnectionInfo, ConnectionNotFoundError, ConnectionResolver
from entity_etl.runtime.databases import Database, DatabaseError, SqliteDatabase, open_database
from entity_etl.runtime.lease import LeaseHeldError, LeaseKeeper, LeaseLostError, LeaseStore
from entity_etl.runtime.metrics import MetricsSink, stage_metrics
from entity_etl.runtime.object_store import ObjectStore
from entity_etl.runtime.redaction import redact
from entity_etl.runtime.run_store import RunStore, StageRecord, StaleUpdateError, now_iso
from entity_etl.runtime.stats import StageStats
from entity_etl.runtime.translators import TranslationError, Translator

STAGES = ("cleanup", "extract", "load_staging", "translate", "dedupe", "load_target")
TRANSLATION_CACHE_TABLE = "etl_translation_cache"
ROW_ID = "_etl_row"
log = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A stage failed; the message names the entity, the stage and the cause, on one line."""

    def __init__(self, message: str) -> None:
        # One line whatever the cause says: a server error may quote a multi-line query. Redacted: it
        # goes to stderr, the run store, the Airflow log and the notifications.
        super().__init__(redact(" ".join(message.split())))


@dataclass
class RunContext:
    config: EntityConfig
    run_id: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    store: ObjectStore
    resolve_connection: ConnectionResolver
    sql_dir: Path
    translator_factory: Callable[[], Translator]
    translate_page: int = 1_000
    scratch_dir: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Durable stage records (DynamoDB / SQLite); None: not recorded.
    run_store: RunStore | None = None
    #: The entity lease; None: not checked.
    lease_store: LeaseStore | None = None
    #: The lease owner when an Airflow run holds the lease (``ETL_LEASE_OWNER``); None: a stage run by
    #: hand, which takes the lease itself for its duration.
    lease_owner: str | None = None
    metrics: MetricsSink | None = None
    #: Airflow's try number (``ETL_ATTEMPT``); None: one more than the stored attempt.
    attempt: int | None = None
    batch_job_id: str = ""
    #: Continue an unfinished attempt from its checkpoints; False when the stage had already succeeded
    #: and is being redone (set by :func:`run_stage` from the run store).
    resume: bool = True
    #: The extract partition of an array-job child (``AWS_BATCH_JOB_ARRAY_INDEX``); None: all of them.
    partition: int | None = None
    #: Raises once the entity lease is lost (set by :func:`run_stage`); called before each checkpoint.
    lease_guard: Callable[[], None] | None = None
    #: The lease epoch the submitting task saw (``ETL_LEASE_EPOCH``); None: whatever this run holds.
    lease_epoch: int | None = None
    #: This run's fencing token (set by :func:`run_stage`); ``fencing.check`` before each commit.
    fence: fencing.Fence | None = None

    @property
    def entity(self) -> str:
        return self.config.entity

    @property
    def run_key(self) -> str:
        """``run_id`` made safe for an object key, with a short hash so distinct ids never collide."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.run_id)[:100]
        return f"{safe}-{hashlib.sha256(self.run_id.encode()).hexdigest()[:8]}"

    @property
    def extract_prefix(self) -> str:
        return f"extracts/{self.entity}/{self.run_key}/"

    @property
    def manifest_key(self) -> str:
        return self.extract_prefix + "_manifest.json"

    def stats_key(self, stage: str) -> str:
        return f"runs/{self.entity}/{self.run_key}/stats/{stage}.json"

    def interval_params(self) -> dict[str, str]:
        fmt = "%Y-%m-%d %H:%M:%S"
        return {
            "data_interval_start": _utc(self.interval_start).strftime(fmt),
            "data_interval_end": _utc(self.interval_end).strftime(fmt),
        }

    def connect(self, conn_id: str, *, local_infile: bool = False) -> Database:
        """``local_infile``: allow ``LOAD DATA LOCAL INFILE`` (MySQL), only for the connection that loads."""
        info: ConnectionInfo = self.resolve_connection(conn_id)
        db = open_database(info, local_infile=local_infile)
        db.connect()
        return db


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _count(db: Database, table: str) -> int:
    return int(db.query(f"SELECT COUNT(*) FROM {db.table(table)}")[0][0])


def _staging_columns(config: EntityConfig) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in config.columns]


# -- cleanup ---------------------------------------------------------------------------------------
def cleanup(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        staging_ledger.own_staging(db, config)  # refuses a table this entity does not own
        before = _count(db, config.staging.table)
        staging_ledger.next_load(db, config)
        db.execute(f"DROP TABLE IF EXISTS {db.table(config.staging.table)}")
        db.execute(db.create_table_sql(config.staging.table, _staging_columns(config), row_id=True))
        db.commit()
    return {"rows_in": before, "rows_out": 0, "details": {"rows_dropped": before}}


# -- extract ---------------------------------------------------------------------------------------
class _PartWriter:
    """One gzip CSV extract part, written batch by batch.

    Each fetch batch is encoded as one block (``csv_codec.encode_rows``: the same bytes as
    ``encode_row`` per row, in less CPU). Compressing on a writer thread was measured too and gave
    no gain where the stage has one vCPU or shares its cores with the server (bench/README.md).
    """

    def __init__(self, path: Path, order: list[int] | None) -> None:
        self.path, self.order, self.rows = path, order, 0
        self._raw = path.open("wb")
        # Level 1: ~7x faster than gzip's default 9 for ~10% more bytes (see bench/README.md).
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=1, mtime=0)

    def write(self, batch: Sequence[Sequence[bytes | None]]) -> None:
        self._gz.write(csv_codec.encode_rows(batch, self.order))
        self.rows += len(batch)
        failpoints.hit("extract.batch_written")

    def close(self) -> int:
        try:
            self._gz.close()
        finally:
            self._raw.close()
        return self.rows


@dataclass(frozen=True)
class _PlannedChunk:
    """One extract chunk to do: ``after < key <= upto`` (encoded bounds, as checkpointed), and the raw
    bounds that bind into its query (``high`` None: open-ended, the end of the last partition)."""

    after: dict[str, str] | None
    upto: dict[str, str] | None
    high: Any

    @property
    def low(self) -> Any:
        return chunks.decode_key(self.after) if self.after is not None else None

    def checkpoint_data(self, end: dict[str, str] | None) -> dict[str, Any]:
        return {"after": self.after, "upto": self.upto, "end": end}


def _window_tag(row: Sequence[bytes | None]) -> int:
    """The chunk a row of a window query belongs to (its last column, :data:`chunks.WINDOW_COLUMN`)."""
    return int(row[-1])  # type: ignore[arg-type]


def extract(ctx: RunContext) -> dict[str, Any]:
    """Keyset chunks of the source query to gzip CSV parts, each checkpointed; then the manifest.

    A rerun of an unfinished extract continues after the last checkpointed chunk (see ``chunks``).
    With ``source.split_points``, ``ctx.partition`` picks one key-range partition (an array-job
    child); ``None`` runs them all, one after the other. The manifest is written once every
    partition has its own.
    """
    config = ctx.config
    sql_path = ctx.sql_dir / config.source.extract_sql
    try:
        sql = sql_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StageError(f"{config.entity}: extract: cannot read {sql_path}: {exc.strerror}") from None
    count = config.extract_partitions
    if ctx.partition is not None and not 0 <= ctx.partition < count:
        raise StageError(
            f"{config.entity}: extract: partition {ctx.partition} does not exist; "
            f"source.split_points gives {count} partition(s), 0 to {count - 1}"
        )
    mine = range(count) if ctx.partition is None else [ctx.partition]
    partials: dict[int, dict[str, Any]] = {}
    resumed = 0
    with ctx.connect(config.source.conn_id) as db, tempfile.TemporaryDirectory(dir=ctx.scratch_dir) as scratch:
        for index in mine:
            partials[index], done_before = _extract_partition(ctx, db, Path(scratch), sql, sql_path, index)
            resumed += done_before
    own = [p for index in mine for p in partials[index]["parts"]]
    merged = _merge_partitions(ctx, sql, partials)
    # The whole extract's figures once it is complete (the merging child of an array job reports them
    # for all); an array child that is not the last reports its own partition.
    parts = merged["parts"] if merged else own
    rows = sum(p["rows"] for p in parts)
    return {
        "rows_in": rows,
        "rows_out": rows,
        "bytes": sum(p["bytes"] for p in parts),
        "details": {
            "parts": len(parts),
            "chunk_key": config.extract_chunk_key,
            "partitions": list(mine) if count > 1 else None,
            "partition_rows": sum(p["rows"] for p in own) if count > 1 else None,
            "resumed_chunks": resumed,
            "manifest": ctx.store.uri(ctx.manifest_key) if merged else None,
        },
    }


def _partition_prefix(ctx: RunContext, index: int) -> str:
    return ctx.extract_prefix if ctx.config.extract_partitions == 1 else f"{ctx.extract_prefix}p{index:02d}/"


def _partition_plan(ctx: RunContext, sql: str, index: int) -> str:
    config = ctx.config
    return chunks.plan_id(
        "extract" if config.extract_partitions == 1 else f"extract.p{index:02d}",
        ctx.store.uri(_partition_prefix(ctx, index)),
        sql,
        config.extract_chunk_key,
        config.source.chunk_rows,
        [c.name for c in config.columns],
        ctx.interval_params(),
        config.source.split_points,
    )


def _extract_partition(
    ctx: RunContext, db: Database, scratch: Path, sql: str, sql_path: Path, index: int
) -> tuple[dict[str, Any], int]:
    """Extract one key-range partition; return its partial manifest and how many chunks were resumed."""
    config = ctx.config
    expected = [c.name for c in config.columns]
    key_column = config.extract_chunk_key
    split = config.source.split_points
    count = len(split) + 1
    lower_bound = split[index - 1] if index > 0 else None
    upper_bound = split[index] if index < count - 1 else None
    stage = "extract" if count == 1 else f"extract.p{index:02d}"
    prefix = _partition_prefix(ctx, index)
    plan = _partition_plan(ctx, sql, index)
    checkpoints = chunks.StageCheckpoints(
        ctx.run_store, ctx.entity, ctx.run_id, stage, plan, fresh=not ctx.resume, guard=ctx.lease_guard
    )
    if not checkpoints.done:
        # A fresh start: remove the parts of an earlier attempt, and the merged manifest, which is
        # written last, so a reader never sees a half-finished extract.
        ctx.store.delete_prefix(prefix)
        ctx.store.delete_prefix(ctx.manifest_key)
    resumed = len(checkpoints.done)
    key = db.quote(key_column)
    params = ctx.interval_params()

    def column_order(names: list[str]) -> list[int]:
        missing = [c for c in expected if c not in names]
        unexpected = [c for c in names if c not in expected]
        if missing or unexpected:
            raise StageError(
                f"{config.entity}: extract: query columns do not match the entity's columns"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {unexpected}" if unexpected else "")
                + f" ({sql_path})"
            )
        return [names.index(c) for c in expected]

    def part_writer(chunk: str, order: list[int] | None) -> _PartWriter:
        return _PartWriter(scratch / f"part-{chunk}.csv.gz", order)

    def finish(chunk: str, writer: _PartWriter | None, extra: dict[str, Any]) -> None:
        """Upload the chunk's part (none when it has no rows), then checkpoint the chunk."""
        rows = writer.close() if writer is not None else 0
        part: dict[str, Any] = {"key": None, "uri": None, "rows": rows, "bytes": 0}
        if writer is not None and rows:
            part["key"] = prefix + writer.path.name
            part["uri"] = ctx.store.put_file(part["key"], writer.path)
            part["bytes"] = writer.path.stat().st_size
            failpoints.hit("extract.part_uploaded")
        if writer is not None:
            writer.path.unlink()
        checkpoints.record(chunk, {**part, **extra})

    def run_chunk(chunk: str, chunk_query: str, bounds: dict[str, Any], extra: dict[str, Any]) -> None:
        names, batches = db.stream(chunk_query, {**params, **bounds}, config.source.fetch_rows)
        order = column_order(names)
        writer = part_writer(chunk, None if order == list(range(len(names))) else order)
        try:
            for batch in batches:
                writer.write(batch)
        except BaseException:
            writer.close()
            raise
        finish(chunk, writer, extra)

    def run_window(first: int, window: list[_PlannedChunk]) -> None:
        """Several consecutive chunks from one read of the source: the server tags each row with its
        chunk (by the planned bounds, in its own collation) and the rows go to their chunk's part as
        they come, with no sort; each part is uploaded and checkpointed, in chunk order, once the
        window has been read. One query per chunk is a full scan of the source each time where the
        key's index does not cover the query's filter. A window that fails part way is read again."""
        low, high = window[0].low, window[-1].high
        bounds: dict[str, Any] = {f"chunk_cut_{i}": c.high for i, c in enumerate(window[:-1])}
        if low is not None:
            bounds["chunk_after"] = low
        if high is not None:
            bounds["chunk_upto"] = high
        query = chunks.window_sql(sql, key, lower=low is not None, upper=high is not None, cuts=len(window) - 1)
        names, batches = db.stream(query, {**params, **bounds}, config.source.fetch_rows)
        if names[-1] != chunks.WINDOW_COLUMN:
            raise StageError(f"{config.entity}: extract: the chunk column {chunks.WINDOW_COLUMN} is missing")
        order = column_order(names[:-1])
        writers = [part_writer(chunks.chunk_id(first + i), order) for i in range(len(window))]
        try:
            for batch in batches:
                by_chunk: list[list[Sequence[bytes | None]]] = [[] for _ in writers]
                for row in batch:
                    by_chunk[_window_tag(row)].append(row)
                for writer, rows in zip(writers, by_chunk, strict=True):
                    if rows:
                        writer.write(rows)
        except BaseException:
            for writer in writers:
                writer.close()
            raise
        for i, writer in enumerate(writers):
            finish(chunks.chunk_id(first + i), writer, window[i].checkpoint_data(end))

    last = checkpoints.last
    if last is None or last.chunk != chunks.NULL_CHUNK:
        chunk_index = 0 if last is None else int(last.chunk) + 1
        after = chunks.encode_key(lower_bound) if lower_bound is not None else None
        if last is not None:
            after = last.data.get("upto")
        end = chunks.encode_key(upper_bound) if upper_bound is not None else None
        finished = last is not None and last.data.get("upto") == last.data.get("end")
        # The chunks still to do, planned from what the source holds now (a resumed extract plans
        # the rest after its last checkpoint).
        planned: list[_PlannedChunk] = []
        if not finished:
            for cut in _cut_points(ctx, db, sql, key, after, upper_bound):
                planned.append(_PlannedChunk(after, chunks.encode_key(cut), cut))
                after = planned[-1].upto
                if after == end:
                    break
            else:  # fewer than chunk_rows rows remain: the rest of the partition
                planned.append(_PlannedChunk(after, end, upper_bound))
        window_size = db.chunk_window
        for offset in range(0, len(planned), window_size):
            window = planned[offset : offset + window_size]
            if len(window) == 1:
                (one,) = window
                bounds = {} if one.low is None else {"chunk_after": one.low}
                if one.high is not None:
                    bounds["chunk_upto"] = one.high
                query = chunks.chunk_sql(sql, key, lower=one.low is not None, upper=one.high is not None)
                run_chunk(chunks.chunk_id(chunk_index + offset), query, bounds, one.checkpoint_data(end))
            else:
                run_window(chunk_index + offset, window)
        if upper_bound is None:  # the last partition also takes the NULL keys
            run_chunk(chunks.NULL_CHUNK, chunks.null_chunk_sql(sql, key), {}, {"after": None, "upto": None})
    partial = {
        "partition": index,
        "plan": plan,
        "parts": [{k: c.data[k] for k in ("key", "uri", "rows", "bytes")} for c in checkpoints.done if c.data["rows"]],
    }
    if count > 1:
        ctx.store.put_bytes(f"{prefix}_partition.json", json.dumps(partial, indent=2).encode())
    return partial, resumed


def _cut_points(
    ctx: RunContext, db: Database, sql: str, key: str, after: dict[str, str] | None, upper_bound: Any
) -> list[Any]:
    """The upper bounds of the chunks past ``after`` within the partition, the open last one aside.

    A count first: most extracts (a day's delta) fit in one chunk, and counting scans without the
    sort. Otherwise one ordered pass over the keys and their counts, read as the server sends them
    (memory stays flat), gives every bound; asking for each bound with ``ORDER BY key LIMIT 1 OFFSET
    n`` sorts the rest of the partition once per chunk (bench/README.md).
    """
    bounds: dict[str, Any] = {} if after is None else {"chunk_after": chunks.decode_key(after)}
    if upper_bound is not None:
        bounds["chunk_upto"] = upper_bound
    params = {**ctx.interval_params(), **bounds}
    lower, upper = after is not None, upper_bound is not None
    rows = ctx.config.source.chunk_rows
    try:
        if int(db.query(db.bind_interval(chunks.count_sql(sql, key, lower=lower, upper=upper)), params)[0][0]) <= rows:
            return []
        groups = db.iter_query(
            db.bind_interval(chunks.key_counts_sql(sql, key, lower=lower, upper=upper)),
            params,
            ctx.config.source.fetch_rows,
        )
        return list(chunks.cut_points(groups, rows))
    except DatabaseError as exc:  # said as the streamed chunk query says it
        conn = db.info.conn_id
        raise DatabaseError(f"{conn}: source query failed: {str(exc).removeprefix(f'{conn}: ')}") from None


def _merge_partitions(ctx: RunContext, sql: str, partials: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """Write the manifest once every partition has its part list of this plan; return it (or None)."""
    config = ctx.config
    count = config.extract_partitions
    for index in range(count):
        if index in partials:
            continue
        try:
            partial = json.loads(ctx.store.get_bytes(f"{_partition_prefix(ctx, index)}_partition.json"))
        except FileNotFoundError:
            return None  # another array child is still extracting; the last one writes the manifest
        if partial.get("plan") != _partition_plan(ctx, sql, index):
            return None  # left by an extract of another plan: that partition has yet to run
        partials[index] = partial
    parts = [part for index in range(count) for part in partials[index]["parts"]]
    manifest = {
        "entity": config.entity,
        "run_id": ctx.run_id,
        "interval": ctx.interval_params(),
        "columns": [c.name for c in config.columns],
        "format": "csv+gzip; NULL unquoted, values quoted",
        "chunk_key": config.extract_chunk_key,
        "split_points": list(config.source.split_points),
        "rows": sum(p["rows"] for p in parts),
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


# -- load_staging ----------------------------------------------------------------------------------
def load_staging(ctx: RunContext) -> dict[str, Any]:
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
        ctx.run_store, ctx.entity, ctx.run_id, "load_staging", plan, fresh=not ctx.resume, guard=ctx.lease_guard
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
        staging = db.table(config.staging.table)
        row = db.quote(ROW_ID)
        keep_upto = int(checkpoints.last.data["max_row"]) if checkpoints.last else 0
        fencing.check(ctx.fence, db)  # before the TRUNCATE, which commits by itself in MySQL
        if keep_upto == 0 and db.dialect == "mysql":
            db.execute(f"TRUNCATE TABLE {staging}")  # a fresh load; DDL, instant at any size
        else:
            db.execute(f"DELETE FROM {staging} WHERE {row} > {db.placeholder()}", [keep_upto])
        db.commit()
        for index, part in enumerate(manifest["parts"]):
            chunk = chunks.chunk_id(index)
            if chunk in done:
                continue
            gz_path = Path(scratch) / "part.csv.gz"
            csv_path = Path(scratch) / "part.csv"
            ctx.store.get_file(part["key"], gz_path)
            try:
                with gzip.open(gz_path, "rb") as src, csv_path.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except (OSError, EOFError, zlib.error) as exc:
                raise StageError(
                    f"{config.entity}: load_staging: {part['uri']} is not a readable gzip part ({exc}); "
                    "rerun the extract"
                ) from None
            size += gz_path.stat().st_size
            gz_path.unlink()
            try:
                n = db.load_csv(config.staging.table, columns, csv_path)
                if n != part["rows"]:
                    raise StageError(
                        f"{config.entity}: load_staging: {part['uri']} loaded {n} rows, the manifest says "
                        f"{part['rows']}"
                    )
                max_row = int(db.query(f"SELECT MAX({row}) FROM {staging}")[0][0] or 0)
                failpoints.hit("load_staging.part_loaded")  # loaded, not yet committed
                fencing.check(ctx.fence, db)
                db.commit()
            except BaseException:
                db.rollback()
                raise
            csv_path.unlink()
            failpoints.hit("load_staging.part_committed")
            checkpoints.record(chunk, {"key": part["key"], "rows": n, "max_row": max_row})
            loaded += n
        staging_ledger.mark(db, config, "loaded_seq", load_seq)
        fencing.check(ctx.fence, db)
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


# -- translate -------------------------------------------------------------------------------------
def _previous_stats(ctx: RunContext, stage: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(ctx.store.get_bytes(ctx.stats_key(stage)))
    except FileNotFoundError:
        return None
    return data


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def translate(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    tcfg = config.translate
    if not tcfg.enabled:
        return {"details": {"skipped": "translate is not enabled for this entity"}}
    loaded = _previous_stats(ctx, "load_staging")
    load_id = (loaded or {}).get("details", {}).get("load_id")
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        owner = staging_ledger.require_staging(db, config)
        if owner.translated:
            # Staging already holds translated values for this load: translating English text again
            # "from" the source language would be wrong, so a rerun is a no-op.
            done = _previous_stats(ctx, "translate") or {"rows_in": 0, "rows_out": 0, "details": {}}
            return {
                **{k: done[k] for k in ("rows_in", "rows_out")},
                "details": {**done["details"], "load_seq": owner.load_seq, "rerun": "no-op"},
            }
        return _translate(ctx, db, owner.load_seq, load_id)


def _translate(ctx: RunContext, db: Database, load_seq: int, load_id: str | None) -> dict[str, Any]:
    config = ctx.config
    tcfg = config.translate
    translator = ctx.translator_factory()
    hash_fn = _translation_cache(db)
    rows_in = _count(db, config.staging.table)
    counts = {"distinct_values": 0, "cache_hits": 0, "calls": 0, "untranslated": 0}
    for column in tcfg.columns:
        _cache_column(ctx, db, translator, column, counts)
    updated = _apply_translations(db, config, hash_fn)
    staging_ledger.mark(db, config, "translated_seq", load_seq)
    fencing.check(ctx.fence, db)
    db.commit()
    return {
        "rows_in": rows_in,
        "rows_out": updated,
        "details": {
            "translator": translator.label,
            "columns": list(tcfg.columns),
            "distinct_values": counts["distinct_values"],
            "cache_hits": counts["cache_hits"],
            "translated": counts["calls"] - counts["untranslated"],
            "untranslated": counts["untranslated"],
            "load_id": load_id,
            "load_seq": load_seq,
        },
    }


def _translation_cache(db: Database) -> str:
    """Create the cache table if needed; return the SQL text hash of a value (``{}``: the value)."""
    if isinstance(db, SqliteDatabase):
        db.conn.create_function("etl_sha256", 1, _sha256, deterministic=True)
        hash_fn = "etl_sha256({})"
    else:
        hash_fn = "SHA2({}, 256)"
    db.execute(
        db.create_table_sql(
            TRANSLATION_CACHE_TABLE,
            [
                ("source_language", "string(16)"),
                ("target_language", "string(16)"),
                ("source_hash", "string(64)"),
                ("source_text", "text"),
                ("translated_text", "text"),
            ],
            key=["source_language", "target_language", "source_hash"],
        )
    )
    db.commit()
    return hash_fn


def _cache_column(ctx: RunContext, db: Database, translator: Translator, column: str, counts: dict[str, int]) -> None:
    """Translate the distinct values of one staging column that the cache lacks, into the cache."""
    config = ctx.config
    src, tgt = config.translate.source_language, config.translate.target_language
    q, p, cache = db.quote, db.placeholder(), TRANSLATION_CACHE_TABLE
    staging = db.table(config.staging.table)
    col = q(column)
    last: str | None = None
    # Keyset pages over the distinct values: memory stays bounded however many there are.
    while True:
        where = f"{col} IS NOT NULL" + (f" AND {col} > {p}" if last is not None else "")
        page = [
            r[0]
            for r in db.query(
                f"SELECT DISTINCT {col} FROM {staging} WHERE {where} ORDER BY {col} LIMIT {ctx.translate_page}",
                [last] if last is not None else None,
            )
        ]
        if not page:
            return
        last = page[-1]
        counts["distinct_values"] += len(page)
        hashes = {_sha256(v): v for v in page}
        marks = ", ".join([p] * len(hashes))
        known = {
            r[0]
            for r in db.query(
                f"SELECT {q('source_hash')} FROM {q(cache)} WHERE {q('source_language')} = {p} "
                f"AND {q('target_language')} = {p} AND {q('source_hash')} IN ({marks})",
                [src, tgt, *hashes],
            )
        }
        counts["cache_hits"] += len(known)
        todo = [v for h, v in hashes.items() if h not in known]
        if not todo:
            continue
        counts["calls"] += len(todo)
        results = translator.translate_batch(todo, src, tgt)
        rows = []
        for original, result in zip(todo, results, strict=True):
            if result is None:
                counts["untranslated"] += 1
                result = original
            rows.append((src, tgt, _sha256(original), original, result))
        # Another run may have cached the same text since the read above: its row stays.
        insert = translation_cache.insert_sql(db, cache)
        for row in rows:
            db.execute(insert, row)
        db.commit()


def _apply_translations(db: Database, config: EntityConfig, hash_fn: str) -> int:
    """Replace every staged value by its cached translation; left uncommitted for the caller."""
    src, tgt = config.translate.source_language, config.translate.target_language
    q, p, cache = db.quote, db.placeholder(), TRANSLATION_CACHE_TABLE
    staging = db.table(config.staging.table)
    updated = 0
    for column in config.translate.columns:
        col = q(column)
        # One set-based pass per column replaces every value by its cached translation, after all
        # the reads (translated values never feed back into the pages above), and all columns in
        # one transaction: a crash between two columns leaves none translated, so a rerun never
        # translates a column's English values again "from" the source language.
        updated += db.execute(
            f"UPDATE {staging} SET {col} = (SELECT c.{q('translated_text')} FROM {q(cache)} c "
            f"WHERE c.{q('source_language')} = {p} AND c.{q('target_language')} = {p} "
            f"AND c.{q('source_hash')} = {hash_fn.format(col)}) "
            f"WHERE {col} IS NOT NULL AND EXISTS (SELECT 1 FROM {q(cache)} c "
            f"WHERE c.{q('source_language')} = {p} AND c.{q('target_language')} = {p} "
            f"AND c.{q('source_hash')} = {hash_fn.format(col)} AND c.{q('translated_text')} <> {db.collate(col)})",
            [src, tgt, src, tgt],
        )
        failpoints.hit("translate.column_updated")  # this column updated, nothing committed yet
    return updated


# -- dedupe ----------------------------------------------------------------------------------------
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
    if db.dialect == "mysql":
        return (
            f"DELETE s FROM {staging} s JOIN (SELECT {q(ROW_ID)} FROM ({ranked}) ranked WHERE rn > 1) d "
            f"ON d.{q(ROW_ID)} = s.{q(ROW_ID)}"
        )
    return f"DELETE FROM {staging} WHERE {q(ROW_ID)} IN (SELECT {q(ROW_ID)} FROM ({ranked}) WHERE rn > 1)"


def dedupe(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        owner = staging_ledger.require_staging(db, config)
        before = _count(db, config.staging.table)
        removed = db.execute(dedupe_sql(db, config))
        failpoints.hit("dedupe.deleted")  # deleted, not yet committed
        staging_ledger.mark(db, config, "deduped_seq", owner.load_seq)
        fencing.check(ctx.fence, db)
        db.commit()
        after = _count(db, config.staging.table)
    return {
        "rows_in": before,
        "rows_out": after,
        "duplicates_removed": removed,
        "details": {"key": list(config.dedupe.key), "keep": config.dedupe.keep, "load_seq": owner.load_seq},
    }


# -- load_target -----------------------------------------------------------------------------------
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


def load_target(ctx: RunContext) -> dict[str, Any]:
    config = ctx.config
    target_cols = [c.target_name for c in config.columns]
    key = [config.column(k).target_name for k in config.dedupe.key]
    with ctx.connect(config.target.conn_id) as db:
        q = db.quote
        staging = db.table(config.staging.table)
        staging_ledger.ensure_ledger(db)
        load_seq = _chained_staging(db, config)
        db.execute(db.create_table_sql(config.target.table, [(c.target_name, c.type) for c in config.columns], key=key))
        db.commit()
        try:
            target_table.check_target(db, config)
        except target_table.TargetTableError as exc:
            raise StageError(str(exc)) from None
        guard = target_table.guard(config)
        null_keys = " OR ".join(f"{q(k)} IS NULL" for k in config.dedupe.key)
        bad = int(db.query(f"SELECT COUNT(*) FROM {staging} WHERE {null_keys}")[0][0])
        if bad:
            raise StageError(
                f"{config.entity}: load_target: {bad} staged rows have a NULL in the key "
                f"{list(config.dedupe.key)}; nothing was written to {config.target.table}"
            )
        low, high = db.query(f"SELECT MIN({q(ROW_ID)}), MAX({q(ROW_ID)}) FROM {staging}")[0]
        rows_in = _count(db, config.staging.table)
        exprs = ", ".join(_sanitized(q, c.name, list(c.sanitize)) for c in config.columns)
        p = db.placeholder()
        sql = db.upsert_sql(
            config.target.table,
            target_cols,
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
        staged = _previous_stats(ctx, "load_staging") or {}
        plan = chunks.plan_id(
            "load_target",
            staged.get("details", {}).get("load_id"),
            load_seq,
            config.target.chunk_rows,
            config.target.table,
            sql,
        )
        checkpoints = chunks.StageCheckpoints(
            ctx.run_store, ctx.entity, ctx.run_id, "load_target", plan, fresh=not ctx.resume, guard=ctx.lease_guard
        )
        resumed = len(checkpoints.done)
        written = sum(int(c.data["written"]) for c in checkpoints.done)
        kept = sum(int(c.data.get("kept", 0)) for c in checkpoints.done)
        if low is not None:
            # Chunks by row id, each committed and checkpointed: bounded transactions on RDS, and a
            # rerun resumes after the last checkpointed chunk. The upsert makes the redo of a chunk
            # that committed but was not checkpointed converge to the same contents, never duplicate.
            last = checkpoints.last
            start = int(last.data["end"]) if last else int(low)
            index = int(last.chunk) + 1 if last else 0
            while start <= int(high):
                end = start + config.target.chunk_rows
                # Counted before the upsert, in its transaction: the rows the target keeps against them.
                n_kept = target_table.count_kept(db, kept_sql, [start, end]) if kept_sql else 0
                db.execute(sql, [start, end])
                n = int(
                    db.query(
                        f"SELECT COUNT(*) FROM {staging} WHERE {q(ROW_ID)} >= {p} AND {q(ROW_ID)} < {p}",
                        [start, end],
                    )[0][0]
                )
                failpoints.hit("load_target.chunk_written")  # upserted, not yet committed
                fencing.check(ctx.fence, db)
                db.commit()
                failpoints.hit("load_target.chunk_committed")
                checkpoints.record(chunks.chunk_id(index), {"start": start, "end": end, "written": n, "kept": n_kept})
                written += n
                kept += n_kept
                index += 1
                start = end
        target_rows = _count(db, config.target.table)
    return {
        "rows_in": rows_in,
        "rows_out": written,
        "details": {
            "target_rows": target_rows,
            "chunks": len(checkpoints.done),
            "resumed_chunks": resumed,
            "target": config.target.table,
            **({"kept_newer" if config.dedupe.keep == "newest" else "kept_older": kept} if kept_sql else {}),
        },
    }


STAGE_FUNCTIONS: dict[str, Callable[[RunContext], dict[str, Any]]] = {
    "cleanup": cleanup,
    "extract": extract,
    "load_staging": load_staging,
    "translate": translate,
    "dedupe": dedupe,
    "load_target": load_target,
}


#: The stages that write to the target database, so raise its fence first (see ``fencing``).
FENCED_STAGES = ("cleanup", "load_staging", "translate", "dedupe", "load_target")


def _lease(ctx: RunContext) -> contextlib.AbstractContextManager[object]:
    if ctx.lease_store is None:
        return contextlib.nullcontext()
    if ctx.lease_owner:
        return LeaseKeeper(
            ctx.lease_store, ctx.entity, ctx.lease_owner, owner_holds_already=True, expected_epoch=ctx.lease_epoch
        )
    owner = f"etlctl:{ctx.run_id}@{socket.gethostname()}:{os.getpid()}"
    return LeaseKeeper(ctx.lease_store, ctx.entity, owner)


def run_stage(ctx: RunContext, stage: str) -> StageStats:
    """Run one stage and return its statistics.

    Around the stage: the entity lease is held (and renewed), the stage's record in the run store goes
    running -> succeeded/failed with conditional writes, and the stage's metrics are emitted. The
    statistics are also stored next to the run's extract.
    """
    if stage not in STAGE_FUNCTIONS:
        raise StageError(f"{ctx.entity}: unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    try:
        with _lease(ctx) as keeper:
            ctx.lease_guard = keeper.check if isinstance(keeper, LeaseKeeper) else None
            if isinstance(keeper, LeaseKeeper) and stage in FENCED_STAGES:
                ctx.fence = fencing.Fence(ctx.entity, keeper.epoch, keeper.owner, keeper.check)
            return _run_recorded(ctx, stage)
    except (LeaseHeldError, LeaseLostError) as exc:
        raise StageError(f"{ctx.entity}: {stage}: {exc}") from exc
    finally:
        ctx.lease_guard = ctx.fence = None


def record_name(ctx: RunContext, stage: str) -> str:
    """The run-store record of this stage run: ``extract.pNN`` for one partition of an array job."""
    if stage == "extract" and ctx.partition is not None and ctx.config.extract_partitions > 1:
        return f"extract.p{ctx.partition:02d}"
    return stage


def _run_recorded(ctx: RunContext, stage: str) -> StageStats:
    started = dt.datetime.now(dt.UTC)
    attempt = ctx.attempt
    name = record_name(ctx, stage)
    if ctx.run_store is not None:
        previous = ctx.run_store.get(ctx.entity, ctx.run_id, name)
        # Resume an attempt that did not finish; redo a stage that had succeeded from the start.
        ctx.resume = previous is None or previous.status != "succeeded"
        if attempt is None:
            attempt = previous.attempt + 1 if previous else 1
        record = StageRecord(
            ctx.entity,
            ctx.run_id,
            name,
            "running",
            attempt=attempt,
            started_at=started.isoformat(),
            batch_job_id=ctx.batch_job_id,
        )
        try:
            ctx.run_store.put(record)
        except StaleUpdateError as exc:
            raise StageError(f"{ctx.entity}: {name}: not started: {exc}") from exc
    t0 = time.perf_counter()
    try:
        stats = _execute(ctx, stage, name, started, t0)
        if ctx.lease_guard is not None:
            ctx.lease_guard()  # a run that lost its lease never records success
    except StageError as exc:
        _finish(ctx, stage, name, attempt, started, None, str(exc), time.perf_counter() - t0)
        raise
    except LeaseLostError as exc:
        _finish(ctx, stage, name, attempt, started, None, f"{ctx.entity}: {stage}: {exc}", time.perf_counter() - t0)
        raise
    except BaseException as exc:  # killed or interrupted (SystemExit, KeyboardInterrupt): say so, then go
        _finish(
            ctx,
            stage,
            name,
            attempt,
            started,
            None,
            f"{ctx.entity}: {stage}: interrupted ({type(exc).__name__})",
            time.perf_counter() - t0,
        )
        raise
    _finish(ctx, stage, name, attempt, started, stats, "", stats.duration_s)
    if name != stage and stats.details.get("manifest"):
        # The array child that completed the extract also records (and reports) the whole stage.
        _finish(ctx, stage, stage, attempt, started, stats, "", stats.duration_s, emit=False)
        ctx.store.put_bytes(ctx.stats_key(name), stats.to_json().encode())
    return stats


def _finish(
    ctx: RunContext,
    stage: str,
    name: str,
    attempt: int | None,
    started: dt.datetime,
    stats: StageStats | None,
    error: str,
    duration_s: float,
    *,
    emit: bool = True,
) -> None:
    if ctx.metrics is not None and emit:
        try:
            ctx.metrics.emit(ctx.entity, stage, stage_metrics(stats, failed=stats is None, duration_s=duration_s))
        except Exception as exc:  # metrics are best effort: a CloudWatch error never fails a stage
            log.warning("%s: %s: metrics not sent: %s: %s", ctx.entity, stage, type(exc).__name__, exc)
    if ctx.run_store is not None:
        try:
            ctx.run_store.put(
                StageRecord(
                    ctx.entity,
                    ctx.run_id,
                    name,
                    "succeeded" if stats is not None else "failed",
                    attempt=attempt or 1,
                    started_at=started.isoformat(),
                    ended_at=now_iso(),
                    stats=stats.to_dict() if stats is not None else {},
                    error=error[:2000],
                    batch_job_id=ctx.batch_job_id,
                )
            )
        except StaleUpdateError:
            if name == stage and stats is not None and record_name(ctx, stage) != stage:
                return  # another array child already recorded the completed extract
            raise


def _execute(ctx: RunContext, stage: str, name: str, started: dt.datetime, t0: float) -> StageStats:
    try:
        if ctx.fence is not None:
            with ctx.connect(ctx.config.target.conn_id) as db:
                fencing.advance(db, ctx.fence)
        result = STAGE_FUNCTIONS[stage](ctx)
    except (StageError, LeaseLostError):
        raise
    except staging_ledger.LedgerError as exc:
        raise StageError(f"{ctx.entity}: {stage}: {exc}") from None
    except (DatabaseError, ConnectionNotFoundError, csv_codec.CsvFormatError, TranslationError, ValueError) as exc:
        raise StageError(f"{ctx.entity}: {stage}: {exc}") from exc
    except FileNotFoundError as exc:
        raise StageError(f"{ctx.entity}: {stage}: missing file {exc}") from exc
    except Exception as exc:  # anything else (an AWS or OS error): still one line, and recorded as failed
        raise StageError(f"{ctx.entity}: {stage}: {type(exc).__name__}: {exc}") from exc
    duration = time.perf_counter() - t0
    stats = StageStats(
        entity=ctx.entity,
        stage=stage,
        run_id=ctx.run_id,
        rows_in=int(result.get("rows_in", 0)),
        rows_out=int(result.get("rows_out", 0)),
        duplicates_removed=int(result.get("duplicates_removed", 0)),
        bytes=int(result.get("bytes", 0)),
        duration_s=round(duration, 3),
        started_at=started.isoformat(),
        finished_at=dt.datetime.now(dt.UTC).isoformat(),
        details=result.get("details", {}),
    )
    ctx.store.put_bytes(ctx.stats_key(name), stats.to_json().encode())
    return stats
