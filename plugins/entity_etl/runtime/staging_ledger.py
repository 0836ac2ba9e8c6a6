"""Which staging tables the pipeline owns, and which load of each one dedupe and translate have seen.

One row per staging table in ``etl_owned_tables``, in the target database, next to the table it
describes:

* **Ownership.** The row is written when a stage creates the staging table, for the entity whose run
  created it. Before any ``DROP``, ``TRUNCATE``, ``DELETE`` or ``UPDATE`` of staging, the stage checks
  the row names its entity, so a config mistake (a staging table that is the target, or another
  entity's table, in any spelling) or a hand edit can never make it destroy a table it does not own.
  A staging table made by a version before this ledger (it has the ``_etl_row`` column and no row
  here) is adopted by the first entity that uses it; any other table without a row is refused.
* **Stage chain.** ``load_seq`` counts the loads of the table (every ``cleanup`` and ``load_staging``
  that changes it takes the next number before it does); ``loaded_seq``, ``translated_seq`` and
  ``deduped_seq`` say which load finished loading, was translated and was deduplicated, each written
  in the transaction of the change it marks. ``load_target`` takes staging only when all of them name
  the current load, so a ``load_staging`` rerun after ``dedupe`` can never upsert duplicates.

Names are compared as :meth:`Database.canonical_table` spells them (case folded, default schema
dropped).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from entity_etl.config.model import EntityConfig
from entity_etl.runtime.databases import Database, DatabaseError

LEDGER_TABLE = "etl_owned_tables"
ROW_ID = "_etl_row"
_MARKS = ("loaded_seq", "translated_seq", "deduped_seq")


class LedgerError(RuntimeError):
    """A staging table is not this entity's, or not in the state a stage needs; one line (the stage
    runner prefixes the entity and the stage)."""


@dataclass(frozen=True)
class StagingState:
    table: str
    entity: str
    load_seq: int
    loaded_seq: int
    translated_seq: int
    deduped_seq: int

    @property
    def loaded(self) -> bool:
        return self.loaded_seq == self.load_seq

    @property
    def translated(self) -> bool:
        return self.translated_seq == self.load_seq

    @property
    def deduped(self) -> bool:
        return self.deduped_seq == self.load_seq


def ensure_ledger(db: Database) -> None:
    db.execute(
        db.create_table_sql(
            LEDGER_TABLE,
            [
                ("table_name", "string(200)"),
                ("entity", "string(64)"),
                ("created_at", "string(40)"),
                ("load_seq", "bigint"),
                ("loaded_seq", "bigint"),
                ("translated_seq", "bigint"),
                ("deduped_seq", "bigint"),
            ],
            key=["table_name"],
        )
    )
    db.commit()


def state(db: Database, table: str) -> StagingState | None:
    p = db.placeholder()
    rows = db.query(
        f"SELECT table_name, entity, load_seq, loaded_seq, translated_seq, deduped_seq FROM {LEDGER_TABLE} "
        f"WHERE table_name = {p}",
        [db.canonical_table(table)],
    )
    if not rows:
        return None
    name, entity, *seqs = rows[0]
    return StagingState(str(name), str(entity), *(int(s or 0) for s in seqs))


def check_identity(db: Database, config: EntityConfig) -> None:
    """Refuse an entity whose staging and target are one table, or whose target is a staging table."""
    staging, target = db.canonical_table(config.staging.table), db.canonical_table(config.target.table)
    if staging == target:
        raise LedgerError(
            f"staging.table {config.staging.table!r} and target.table {config.target.table!r} "
            f"are one table ({target!r} in {db.info.conn_id}); give staging a name of its own"
        )
    owner = state(db, config.target.table)
    if owner is not None:
        raise LedgerError(
            f"target.table {config.target.table!r} is the staging table of entity "
            f"{owner.entity!r} in {db.info.conn_id} ({LEDGER_TABLE}); nothing was written"
        )


def _has_row_id(db: Database, table: str) -> bool:
    # Read from the table's columns: SQLite takes a double-quoted name it cannot resolve for a string.
    return ROW_ID in {c.lower() for c in db.column_names(table)}


def _claim(db: Database, config: EntityConfig) -> None:
    p = db.placeholder()
    try:
        db.execute(
            f"INSERT INTO {LEDGER_TABLE} (table_name, entity, created_at, load_seq, loaded_seq, translated_seq, "
            f"deduped_seq) VALUES ({p}, {p}, {p}, 0, 0, 0, 0)",
            [db.canonical_table(config.staging.table), config.entity, dt.datetime.now(dt.UTC).isoformat()],
        )
        db.commit()
    except DatabaseError:  # another run claimed it first: say whose it is
        db.rollback()
        _check_owner(db, config, state(db, config.staging.table))


def _check_owner(db: Database, config: EntityConfig, owner: StagingState | None) -> StagingState:
    if owner is None:
        raise LedgerError(
            f"staging.table {config.staging.table!r} exists in {db.info.conn_id} but the pipeline "
            f"did not create it (no row in {LEDGER_TABLE}, no {ROW_ID} column); refusing to drop or empty it: "
            "rename staging.table, or drop that table by hand if it is an old staging table"
        )
    if owner.entity != config.entity:
        raise LedgerError(
            f"staging.table {config.staging.table!r} is the staging table of entity "
            f"{owner.entity!r} in {db.info.conn_id} ({LEDGER_TABLE}); refusing to touch it: give this entity "
            "a staging table of its own"
        )
    return owner


def own_staging(db: Database, config: EntityConfig) -> StagingState:
    """The staging table's ledger row, claimed for ``config.entity`` (refused if another owns it).

    A missing staging table is created and claimed; an existing one must be this entity's, or an
    unclaimed table that has the pipeline's ``_etl_row`` column (made before the ledger), adopted."""
    check_identity(db, config)
    owner = state(db, config.staging.table)
    if db.table_exists(config.staging.table):
        if owner is None and _has_row_id(db, config.staging.table):
            _claim(db, config)
            owner = state(db, config.staging.table)
        owner = _check_owner(db, config, owner)
    else:
        if owner is not None:
            _check_owner(db, config, owner)
        columns = [(c.name, c.type) for c in config.columns]
        db.execute(db.create_table_sql(config.staging.table, columns, row_id=True))
        db.commit()
        if owner is None:
            _claim(db, config)
        owner = _check_owner(db, config, state(db, config.staging.table))
    return owner


def require_staging(db: Database, config: EntityConfig) -> StagingState:
    """This entity's staging, completely loaded: what translate, dedupe and load_target read."""
    check_identity(db, config)
    owner = _check_owner(db, config, state(db, config.staging.table))
    if not owner.loaded:
        raise LedgerError(
            f"staging {config.staging.table!r} holds an unfinished load "
            f"(load {owner.load_seq}): run load_staging to the end first"
        )
    return owner


def next_load(db: Database, config: EntityConfig) -> int:
    """Take the next load number, committed before staging changes: until the load finishes no later
    stage takes the table as loaded, deduplicated or translated."""
    p = db.placeholder()
    db.execute(
        f"UPDATE {LEDGER_TABLE} SET load_seq = load_seq + 1 WHERE table_name = {p} AND entity = {p}",
        [db.canonical_table(config.staging.table), config.entity],
    )
    db.commit()
    owner = state(db, config.staging.table)
    if owner is None or owner.entity != config.entity:
        raise LedgerError(f"staging {config.staging.table!r} is no longer this entity's")
    return owner.load_seq


def _current_load(db: Database, config: EntityConfig) -> int | None:
    owner = state(db, config.staging.table)
    return owner.load_seq if owner is not None and owner.entity == config.entity else None


def mark(db: Database, config: EntityConfig, column: str, seq: int) -> None:
    """Record, in the caller's open transaction, that load ``seq`` is loaded/translated/deduplicated;
    refused (the caller rolls back) when staging has been reloaded meanwhile."""
    if column not in _MARKS:
        raise ValueError(f"unknown ledger mark {column!r}")
    p = db.placeholder()
    changed = db.execute(
        f"UPDATE {LEDGER_TABLE} SET {column} = {p} WHERE table_name = {p} AND entity = {p} AND load_seq = {p}",
        [seq, db.canonical_table(config.staging.table), config.entity, seq],
    )
    if changed != 1 and _current_load(db, config) != seq:  # MySQL counts changed rows, not matched ones
        raise LedgerError(
            f"staging {config.staging.table!r} was reloaded while this stage ran "
            f"(it worked on load {seq}); rolled back: rerun it"
        )
