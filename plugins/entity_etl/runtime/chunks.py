"""Resumable chunks: keyset ranges of the extract query, and the checkpoints of finished chunks.

The extract splits the entity's query into ranges of its chunk key (``source.chunk_key``, default the
first dedupe key column): chunk ``i`` holds the rows with ``after_i < key <= upto_i``, where ``upto_i``
is the key at offset ``chunk_rows`` past ``after_i``, so rows with equal keys never straddle two
chunks, and a final chunk takes the rows whose key is NULL. The bounds come from one ordered pass
over the keys and their counts (:func:`key_counts_sql`, :func:`cut_points`), after a count that skips
that pass when the rows fit in one chunk. Each finished chunk is checkpointed in the
run store with its object key; a rerun of the run continues after the last checkpointed chunk.

``source.split_points`` cut the key space into partitions (``key <= s0``, ``s0 < key <= s1``, ...,
``key > s_last`` and the NULL keys), each chunked the same way within its range, with checkpoints of
its own: the children of an AWS Batch array job take one partition each.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import accumulate
from typing import Any

from entity_etl.runtime import failpoints, sql_text
from entity_etl.runtime.run_store import Checkpoint, RunStore

NULL_CHUNK = "null"


def chunk_id(index: int) -> str:
    return f"{index:06d}"


def plan_id(*parts: Any) -> str:
    """A fingerprint of what a stage's chunks mean; checkpoints of another plan are discarded."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- key values in checkpoints (JSON, typed, so the bound binds as the same type on resume) ---------
def encode_key(value: Any) -> dict[str, str]:
    if isinstance(value, bool | int):
        return {"int": str(int(value))}
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, bytes | bytearray):
        return {"bytes": base64.b64encode(bytes(value)).decode()}
    return {"str": str(value)}


_DECODERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "decimal": Decimal,
    "float": float,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "bytes": base64.b64decode,
    "str": str,
}


def decode_key(data: dict[str, str]) -> Any:
    ((kind, text),) = data.items()
    return _DECODERS[kind](text)


# -- SQL around the entity's query -------------------------------------------------------------
def _inner(sql: str) -> str:
    # The newline ends a trailing "-- comment" before the closing parenthesis.
    return f"({sql_text.without_statement_end(sql).strip()}\n) src"


def _range(key: str, *, lower: bool, upper: bool) -> str:
    conditions = [f"src.{key} > :chunk_after" if lower else f"src.{key} IS NOT NULL"]
    if upper:
        conditions.append(f"src.{key} <= :chunk_upto")
    return " AND ".join(conditions)


def count_sql(sql: str, key: str, *, lower: bool, upper: bool) -> str:
    """The number of rows with a key in ``:chunk_after < key <= :chunk_upto`` (open where a bound is off)."""
    return f"SELECT COUNT(*) FROM {_inner(sql)} WHERE {_range(key, lower=lower, upper=upper)}"


def key_counts_sql(sql: str, key: str, *, lower: bool, upper: bool) -> str:
    """Each distinct key of the range with its row count, in key order: the input of :func:`cut_points`.

    The server groups and orders the keys, so keys that its collation holds equal (``'a'`` and ``'A'``
    under a ``_ci`` collation, ``'x'`` and ``'x '`` under PAD SPACE) form one group, as they do for the
    range conditions of :func:`chunk_sql`.
    """
    return (
        f"SELECT src.{key}, COUNT(*) FROM {_inner(sql)} WHERE {_range(key, lower=lower, upper=upper)} "
        f"GROUP BY src.{key} ORDER BY src.{key}"
    )


def cut_points(groups: Iterable[Sequence[tuple[Any, int]]], rows: int) -> Iterator[Any]:
    """The chunk upper bounds over ``groups`` (batches of ``(key, count)`` in key order): the key of the
    group that holds a chunk's ``rows``-th row, the chunk taking that whole group.

    These are the keys that ``ORDER BY key LIMIT 1 OFFSET rows - 1`` finds past each bound in turn,
    from one ordered pass instead of one sort per chunk; the last chunk (fewer than ``rows`` rows,
    maybe none) has no bound here. By hand rather than a loop per key: a 50M-row extract may have
    50M keys, so each batch's running totals come from ``accumulate`` and each bound from a
    ``bisect`` on them (C speed, linear in the batch however many bounds it holds).
    """
    carried = 0  # rows of the open chunk from earlier batches
    for batch in groups:
        # totals[j]: rows of the open chunk (as of the batch's start) up to and including group j-1.
        totals = list(accumulate((int(c) for _, c in batch), initial=carried))
        base, at = 0, 1  # rows before the open chunk, within totals; first candidate index
        while (at := bisect_left(totals, base + rows, lo=at)) < len(totals):
            yield batch[at - 1][0]
            base, at = totals[at], at + 1
        carried = totals[-1] - base


def chunk_sql(sql: str, key: str, *, lower: bool, upper: bool) -> str:
    """The rows of one chunk: ``:chunk_after < key <= :chunk_upto``, open-ended where a bound is off."""
    return f"SELECT * FROM {_inner(sql)} WHERE {_range(key, lower=lower, upper=upper)}"


WINDOW_COLUMN = "_etl_chunk"


def window_sql(sql: str, key: str, *, lower: bool, upper: bool, cuts: int) -> str:
    """The rows of ``cuts + 1`` consecutive chunks in one query, each tagged with its chunk (0 to
    ``cuts``) in :data:`WINDOW_COLUMN`: chunk ``i`` ends at ``:chunk_cut_i``, the last at
    ``:chunk_upto`` (or the end). The server compares the keys, in its collation, as it does for
    :func:`chunk_sql`, so a chunk holds exactly the rows that chunk's own query would return."""
    case = " ".join(f"WHEN src.{key} <= :chunk_cut_{i} THEN {i}" for i in range(cuts))
    return (
        f"SELECT src.*, CASE {case} ELSE {cuts} END AS {WINDOW_COLUMN} FROM {_inner(sql)} "
        f"WHERE {_range(key, lower=lower, upper=upper)}"
    )


def null_chunk_sql(sql: str, key: str) -> str:
    return f"SELECT * FROM {_inner(sql)} WHERE src.{key} IS NULL"


# -- checkpoints ---------------------------------------------------------------------------------
class StageCheckpoints:
    """The finished chunks of one stage of one run. Without a run store nothing is kept (no resume).

    ``fresh`` (the stage is being redone after it had succeeded) or checkpoints of another plan
    discard what is there, so only an unfinished attempt of the same plan is resumed.
    """

    def __init__(
        self,
        store: RunStore | None,
        entity: str,
        run_id: str,
        stage: str,
        plan: str,
        *,
        fresh: bool,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.store, self.entity, self.run_id, self.stage, self.plan = store, entity, run_id, stage, plan
        #: Called before each checkpoint (the entity lease check): raises to stop the stage there.
        self.guard = guard
        self.done: list[Checkpoint] = []
        if store is None:
            return
        existing = store.checkpoints(entity, run_id, stage)
        if fresh or any(c.plan != plan for c in existing):
            if existing:  # gone before this attempt writes one: a later resume sees only this attempt's
                store.clear_checkpoints(entity, run_id, stage)
        else:
            self.done = existing

    @property
    def last(self) -> Checkpoint | None:
        return self.done[-1] if self.done else None

    def record(self, chunk: str, data: dict[str, Any]) -> Checkpoint:
        if self.guard is not None:
            self.guard()
        checkpoint = Checkpoint(self.entity, self.run_id, self.stage, chunk, self.plan, data)
        if self.store is not None:
            self.store.put_checkpoint(checkpoint)
        self.done.append(checkpoint)
        failpoints.hit(f"{self.stage.split('.')[0]}.checkpointed")  # extract.p02 -> extract.checkpointed
        return checkpoint
