"""The run store: one record per (entity, run) and per stage, written with conditional updates.

Two implementations behind one port, passing the same contract tests:

* :class:`DynamoRunStore` (AWS): table ``ETL_RUNS_TABLE``; partition key ``entity``, sort key
  ``record`` (``<run_id>#<stage>``, stage ``_run`` for the run itself); a local secondary index
  ``by_entity_started`` (entity, started_at) and a global secondary index ``by_day`` (day, started_at),
  so audit reads by entity and by date are Queries, never Scans.
* :class:`SqliteRunStore` (embedded default): the same records in one SQLite file.

Chunk checkpoints live in the same store: one :class:`Checkpoint` per finished chunk of a stage
(extract part, staging load, target chunk), written after the chunk's work is durable, so a rerun of
the run skips what is done. In DynamoDB they are items with sort key ``#chunk#<run_id>#<stage>#<chunk>``
and no ``started_at``/``day`` attributes, so they stay out of both audit indexes.

Ordering rule, enforced by the database (a condition expression / a guarded upsert), so a replayed or
late update never moves a record backwards: an update is accepted when its ``attempt`` is higher than
the stored one, or equal with a later status (``running`` < ``succeeded``/``failed``).

The main record holds a stage's latest attempt; every update it accepts is also kept per attempt
(``attempt_history``), so :meth:`RunStore.attempts` lists every try of a retried stage.
"""

from __future__ import annotations

import os
from pathlib import Path

from entity_etl.runtime.run_store.dynamodb import DynamoRunStore
from entity_etl.runtime.run_store.records import (
    RUN,
    STATUS_RANK,
    Checkpoint,
    RunStore,
    StageRecord,
    StaleUpdateError,
    now_iso,
)
from entity_etl.runtime.run_store.sqlite import SqliteRunStore

__all__ = [
    "RUN",
    "STATUS_RANK",
    "Checkpoint",
    "DynamoRunStore",
    "RunStore",
    "SqliteRunStore",
    "StageRecord",
    "StaleUpdateError",
    "default_state_path",
    "now_iso",
    "open_run_store",
]


def default_state_path() -> Path:
    return Path(os.environ.get("ETL_STATE_DB") or Path.home() / ".local/share/entity-etl/state.db")


def open_run_store() -> RunStore:
    """``ETL_STATE_STORE=dynamodb`` (table ``ETL_RUNS_TABLE``) or ``sqlite`` (``ETL_STATE_DB``, default)."""
    kind = os.environ.get("ETL_STATE_STORE", "sqlite")
    if kind == "dynamodb":
        return DynamoRunStore(os.environ.get("ETL_RUNS_TABLE", "entity-etl-runs"))
    if kind == "sqlite":
        return SqliteRunStore(default_state_path())
    raise ValueError(f"ETL_STATE_STORE={kind!r}: use 'dynamodb' or 'sqlite'")
