"""The fence: a run that lost its entity lease can never commit to the target database.

The lease (``lease``) says who may run; it cannot stop a holder that has already passed its last
check, such as a process frozen for longer than the TTL, or a job left running after its run's
teardown released the lease. So every lease carries an ``epoch`` that grows with each new holder, and
the target database keeps the highest epoch that ever worked on each entity, in ``etl_fence``:

* at the start of a stage that writes to the target, :func:`advance` raises the entity's fence to the
  run's epoch, or refuses when the fence is already higher (a newer run holds the entity);
* right before each commit, :func:`check` bumps the fence row, on the condition that it still holds
  the run's epoch, in the stage's own transaction. A stale run rolls back instead and stops with
  "lease lost". The row is written, not just read: the write takes the row lock (MySQL; the write
  lock on SQLite) until the commit, so a newer run's :func:`advance` waits for that commit, and a read
  in MySQL's REPEATABLE READ snapshot could miss a newer epoch.

DDL commits by itself in MySQL (cleanup's DROP/CREATE, a fresh load's TRUNCATE), so a check before it
narrows the window to the statement but cannot take it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from entity_etl.runtime import failpoints
from entity_etl.runtime.databases import Database, DatabaseError
from entity_etl.runtime.lease import LeaseLostError

TABLE = "etl_fence"
COLUMNS = [("entity", "string(255)"), ("epoch", "bigint"), ("owner", "string(512)"), ("version", "bigint")]


class FencedOutError(LeaseLostError):
    """A newer run holds the entity: this run's uncommitted writes were rolled back."""


@dataclass(frozen=True)
class Fence:
    """This run's fencing token for one entity."""

    entity: str
    epoch: int
    owner: str
    #: The lease keeper's own check (the half-TTL rule), run after the fence's.
    guard: Callable[[], None] | None = None


def ensure_table(db: Database) -> None:
    db.execute(db.create_table_sql(TABLE, COLUMNS, key=["entity"]))
    db.commit()


def _bump(db: Database, fence: Fence, *, advance: bool) -> int:
    """Bump the fence row while it holds ``fence.epoch`` (or, ``advance``, any epoch up to it)."""
    q, p = db.quote, db.placeholder()
    if advance:
        return db.execute(
            f"UPDATE {q(TABLE)} SET {q('epoch')} = {p}, {q('owner')} = {p}, {q('version')} = {q('version')} + 1 "
            f"WHERE {q('entity')} = {p} AND {q('epoch')} <= {p}",
            [fence.epoch, fence.owner[:512], fence.entity, fence.epoch],
        )
    return db.execute(
        f"UPDATE {q(TABLE)} SET {q('version')} = {q('version')} + 1 WHERE {q('entity')} = {p} AND {q('epoch')} = {p}",
        [fence.entity, fence.epoch],
    )


def _holder(db: Database, entity: str) -> tuple[int, str] | None:
    q, p = db.quote, db.placeholder()
    rows = db.query(f"SELECT {q('epoch')}, {q('owner')} FROM {q(TABLE)} WHERE {q('entity')} = {p}", [entity])
    return (int(rows[0][0]), str(rows[0][1])) if rows else None


def _fenced_out(db: Database, fence: Fence, what: str) -> FencedOutError:
    db.rollback()
    newer = _holder(db, fence.entity)
    db.rollback()
    who = f"a newer run ({newer[1]}, epoch {newer[0]})" if newer else "a newer run"
    return FencedOutError(
        f"lease lost: {who} holds {fence.entity}; this run ({fence.owner}, epoch {fence.epoch}) {what}"
    )


def advance(db: Database, fence: Fence) -> None:
    """Raise the entity's fence to this run's epoch (the start of a stage that writes to the target)."""
    ensure_table(db)
    for _ in range(2):
        if _bump(db, fence, advance=True):
            db.commit()
            failpoints.hit("fence.advanced")
            return
        if _holder(db, fence.entity) is not None:
            raise _fenced_out(db, fence, "did not start")
        names = ", ".join(db.quote(name) for name, _ in COLUMNS)
        try:
            db.execute(
                f"INSERT INTO {db.quote(TABLE)} ({names}) VALUES ({', '.join([db.placeholder()] * 4)})",
                [fence.entity, fence.epoch, fence.owner[:512], 1],
            )
        except DatabaseError:  # another run inserted the row first: compare with it
            db.rollback()
            continue
        db.commit()
        failpoints.hit("fence.advanced")
        return
    raise _fenced_out(db, fence, "did not start")


def check(fence: Fence | None, db: Database) -> None:
    """Right before ``db.commit()``: roll back and raise :class:`FencedOutError` unless this run's epoch
    is still the entity's fence, then apply the lease keeper's own check (``None``: no lease, no fence)."""
    if fence is None:
        return
    if not _bump(db, fence, advance=False):
        raise _fenced_out(db, fence, "rolled back its uncommitted writes")
    if fence.guard is not None:
        try:
            fence.guard()
        except LeaseLostError:
            db.rollback()
            raise
