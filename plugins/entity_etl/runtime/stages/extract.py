"""extract: the source query, bound to the run's data interval, to gzip CSV parts and a manifest.

Keyset chunks, each checkpointed (see ``chunks``); with ``source.split_points``, key-range partitions,
each with its own checkpoints and partial manifest (``manifest``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entity_etl.runtime import chunks, csv_codec, failpoints, gzip_parts, settings
from entity_etl.runtime.databases import Database, DatabaseError
from entity_etl.runtime.progress import Progress
from entity_etl.runtime.stages.context import Attempt, RunContext, StageError, partition_prefix, partition_stage
from entity_etl.runtime.stages.extract_pool import run_partitions
from entity_etl.runtime.stages.manifest import merge_partitions, partition_plan
from entity_etl.runtime.stages.row_rules import empty_warning


class _PartWriter:
    """One gzip CSV extract part, written batch by batch.

    Each fetch batch is encoded as one block (``csv_codec.encode_rows``: the same bytes as
    ``encode_row`` per row, in less CPU). Compressing on a writer thread was measured too and gave
    no gain where the stage has one vCPU or shares its cores with the server (bench/README.md).
    """

    def __init__(self, path: Path, order: list[int] | None) -> None:
        self.path, self.order, self.rows = path, order, 0
        self._raw = path.open("wb")
        # ISA-L at level 1 when installed, else zlib level 1 (gzip_parts; bench/README.md).
        self._gz = gzip_parts.part_writer(self._raw)

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


def extract(ctx: RunContext, attempt: Attempt) -> dict[str, Any]:
    """Keyset chunks of the source query to gzip CSV parts, each checkpointed; then the manifest.

    A rerun of an unfinished extract continues after the last checkpointed chunk (see ``chunks``).
    With ``source.split_points``, ``ctx.partition`` picks one key-range partition (an array-job
    child); ``None`` runs them all, one after the other, or up to ``ETL_EXTRACT_WORKERS`` at once in
    worker processes (``extract_pool``). The manifest is written once every partition has its own.
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
    workers = min(settings.extract_workers(), len(mine))
    if workers > 1:  # ETL_EXTRACT_WORKERS: the partitions in worker processes, up to that many at once
        partials, resumed = run_partitions(ctx, attempt, list(mine), workers)
    else:
        partials, resumed = extract_partitions(ctx, attempt, sql, sql_path, mine)
    own = [p for index in mine for p in partials[index]["parts"]]
    merged = merge_partitions(ctx, sql, partials)
    # The whole extract's figures once it is complete (the merging child of an array job reports them
    # for all); an array child that is not the last reports its own partition.
    parts = merged["parts"] if merged else own
    rows = sum(p["rows"] for p in parts)
    details: dict[str, Any] = {
        "parts": len(parts),
        "chunk_key": config.extract_chunk_key,
        "partitions": list(mine) if count > 1 else None,
        "partition_rows": sum(p["rows"] for p in own) if count > 1 else None,
        "resumed_chunks": resumed,
        "manifest": ctx.store.uri(ctx.manifest_key) if merged else None,
    }
    if workers > 1:
        details["workers"] = workers
    if merged and (warning := empty_warning(ctx, rows)):
        details["warning"] = warning  # in the statistics: XCom, the run store, `etlctl run-stage`
    return {"rows_in": rows, "rows_out": rows, "bytes": sum(p["bytes"] for p in parts), "details": details}


def extract_partitions(
    ctx: RunContext, attempt: Attempt, sql: str, sql_path: Path, indexes: Sequence[int]
) -> tuple[dict[int, dict[str, Any]], int]:
    """Extract the partitions ``indexes`` one after the other, in this process: each one's partial
    manifest, and how many chunks were resumed in all (an extract worker process runs one)."""
    partials: dict[int, dict[str, Any]] = {}
    resumed = 0
    with (
        ctx.connect(ctx.config.source.conn_id, read_only=True) as db,
        tempfile.TemporaryDirectory(dir=ctx.scratch_dir) as scratch,
    ):
        for index in indexes:
            run = _PartitionExtract(ctx, attempt, db, Path(scratch), sql, sql_path, index)
            partials[index], done_before = run.run()
            resumed += done_before
    return partials, resumed


class _PartitionExtract:
    """Extract one key-range partition: plan its remaining chunks, read them (alone or a window at a
    time), upload and checkpoint each part; :meth:`run` returns its partial manifest and how many
    chunks were resumed."""

    def __init__(
        self, ctx: RunContext, attempt: Attempt, db: Database, scratch: Path, sql: str, sql_path: Path, index: int
    ) -> None:
        config = ctx.config
        self.ctx, self.db, self.scratch, self.sql, self.sql_path, self.index = ctx, db, scratch, sql, sql_path, index
        self.expected = [c.name for c in config.columns]
        split = config.source.split_points
        self.count = len(split) + 1
        self.lower_bound = split[index - 1] if index > 0 else None
        self.upper_bound = split[index] if index < self.count - 1 else None
        self.end = chunks.encode_key(self.upper_bound) if self.upper_bound is not None else None
        self.prefix = partition_prefix(ctx, index)
        self.plan_id = partition_plan(ctx, sql, index)
        self.checkpoints = chunks.StageCheckpoints(
            ctx.run_store,
            ctx.entity,
            ctx.run_id,
            partition_stage(index, self.count),
            self.plan_id,
            fresh=not attempt.resume,
            guard=attempt.lease_guard,
        )
        self.key = db.quote(config.extract_chunk_key)
        self.params = ctx.interval_params()
        label = f"{ctx.entity}: extract" + (f" partition {index}" if self.count > 1 else "")
        self.progress = Progress(label)

    def run(self) -> tuple[dict[str, Any], int]:
        ctx, checkpoints = self.ctx, self.checkpoints
        if not checkpoints.done:
            # A fresh start: remove the parts of an earlier attempt, and the merged manifest, which is
            # written last, so a reader never sees a half-finished extract.
            ctx.store.delete_prefix(self.prefix)
            ctx.store.delete_prefix(ctx.manifest_key)
        resumed = len(checkpoints.done)
        last = checkpoints.last
        interval = (ctx.interval_start, ctx.interval_end)
        if last is None or last.chunk != chunks.NULL_CHUNK:
            chunk_index = 0 if last is None else int(last.chunk) + 1
            planned = self.plan()
            null_chunk = 1 if self.upper_bound is None else 0
            self.progress.plan(len(planned) + null_chunk, resumed=resumed, interval=interval)
            window_size = self.db.chunk_window
            for offset in range(0, len(planned), window_size):
                window = planned[offset : offset + window_size]
                if len(window) == 1:
                    (one,) = window
                    bounds = {} if one.low is None else {"chunk_after": one.low}
                    if one.high is not None:
                        bounds["chunk_upto"] = one.high
                    query = chunks.chunk_sql(self.sql, self.key, lower=one.low is not None, upper=one.high is not None)
                    self.chunk(chunks.chunk_id(chunk_index + offset), query, bounds, one.checkpoint_data(self.end))
                else:
                    self.window(chunk_index + offset, window)
            if self.upper_bound is None:  # the last partition also takes the NULL keys
                query = chunks.null_chunk_sql(self.sql, self.key)
                self.chunk(chunks.NULL_CHUNK, query, {}, {"after": None, "upto": None})
        else:
            self.progress.plan(0, resumed=resumed, interval=interval)
        partial = {
            "partition": self.index,
            "plan": self.plan_id,
            "parts": [
                {k: c.data[k] for k in ("key", "uri", "rows", "bytes")} for c in checkpoints.done if c.data["rows"]
            ],
        }
        if self.count > 1:
            ctx.store.put_bytes(f"{self.prefix}_partition.json", json.dumps(partial, indent=2).encode())
        return partial, resumed

    def plan(self) -> list[_PlannedChunk]:
        """The chunks still to do, planned from what the source holds now (a resumed extract plans
        the rest after its last checkpoint)."""
        last = self.checkpoints.last
        after = chunks.encode_key(self.lower_bound) if self.lower_bound is not None else None
        if last is not None:
            after = last.data.get("upto")
        finished = last is not None and last.data.get("upto") == last.data.get("end")
        planned: list[_PlannedChunk] = []
        if finished:
            return planned
        for cut in _cut_points(self.ctx, self.db, self.sql, self.key, after, self.upper_bound):
            planned.append(_PlannedChunk(after, chunks.encode_key(cut), cut))
            after = planned[-1].upto
            if after == self.end:
                break
        else:  # fewer than chunk_rows rows remain: the rest of the partition
            planned.append(_PlannedChunk(after, self.end, self.upper_bound))
        return planned

    def _column_order(self, names: list[str]) -> list[int]:
        expected = self.expected
        missing = [c for c in expected if c not in names]
        unexpected = [c for c in names if c not in expected]
        if missing or unexpected:
            raise StageError(
                f"{self.ctx.entity}: extract: query columns do not match the entity's columns"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {unexpected}" if unexpected else "")
                + f" ({self.sql_path})"
            )
        return [names.index(c) for c in expected]

    def _part_writer(self, chunk: str, order: list[int] | None) -> _PartWriter:
        return _PartWriter(self.scratch / f"part-{chunk}.csv.gz", order)

    def chunk(self, chunk: str, chunk_query: str, bounds: dict[str, Any], extra: dict[str, Any]) -> None:
        """One chunk from its own query of the source."""
        names, batches = self.db.stream(chunk_query, {**self.params, **bounds}, self.ctx.config.source.fetch_rows)
        order = self._column_order(names)
        writer = self._part_writer(chunk, None if order == list(range(len(names))) else order)
        try:
            for batch in batches:
                writer.write(batch)
        except BaseException:
            writer.close()
            raise
        self.finish(chunk, writer, extra)

    def window(self, first: int, window: list[_PlannedChunk]) -> None:
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
        query = chunks.window_sql(
            self.sql, self.key, lower=low is not None, upper=high is not None, cuts=len(window) - 1
        )
        names, batches = self.db.stream(query, {**self.params, **bounds}, self.ctx.config.source.fetch_rows)
        if names[-1] != chunks.WINDOW_COLUMN:
            raise StageError(f"{self.ctx.entity}: extract: the chunk column {chunks.WINDOW_COLUMN} is missing")
        order = self._column_order(names[:-1])
        writers = [self._part_writer(chunks.chunk_id(first + i), order) for i in range(len(window))]
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
            self.finish(chunks.chunk_id(first + i), writer, window[i].checkpoint_data(self.end))

    def finish(self, chunk: str, writer: _PartWriter | None, extra: dict[str, Any]) -> None:
        """Upload the chunk's part (none when it has no rows), then checkpoint the chunk."""
        rows = writer.close() if writer is not None else 0
        part: dict[str, Any] = {"key": None, "uri": None, "rows": rows, "bytes": 0}
        if writer is not None and rows:
            part["key"] = self.prefix + writer.path.name
            part["uri"] = self.ctx.store.put_file(part["key"], writer.path)
            part["bytes"] = writer.path.stat().st_size
            failpoints.hit("extract.part_uploaded")
        if writer is not None:
            writer.path.unlink()
        self.checkpoints.record(chunk, {**part, **extra})
        self.progress.chunk_done(rows, part["bytes"])


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
