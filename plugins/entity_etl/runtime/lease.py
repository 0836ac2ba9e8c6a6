"""The entity lease: at most one live run per entity, across backfills, environments and hand-run jobs.

``max_active_runs=1`` only covers one DAG's scheduled runs. The lease is a row per entity with an
owner and an expiry, taken with a conditional write (DynamoDB: a consistent read, then an
``UpdateItem`` on the condition that the row is still as read, when it was free, expired or mine; a
``BEGIN IMMEDIATE`` transaction on SQLite). A holder that dies stops renewing, its lease
expires, and the next run takes it over — the entity is never blocked for ever.

Each acquire by a new owner advances the row's ``epoch`` (a fencing token, see ``fencing``): to
``max(previous + 1, now in ms)``, so it only grows, also after a released row (kept with no owner) was
tidied away. A re-acquire by the current owner keeps it.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entity_etl.runtime import settings


@dataclass(frozen=True)
class Lease:
    entity: str
    owner: str
    expires_at: float
    acquired_at: float
    #: The fencing token: grows with every acquire by a new owner.
    epoch: int = 0

    def describe(self) -> str:
        left = max(0, int(self.expires_at - time.time()))
        return f"{self.owner} (expires in {left}s)"


class LeaseHeldError(RuntimeError):
    def __init__(self, entity: str, holder: Lease) -> None:
        super().__init__(f"{entity}: the entity lease is held by {holder.describe()}")
        self.holder = holder


class LeaseLostError(RuntimeError):
    pass


def next_epoch(previous: int, now: float) -> int:
    """The epoch of a new holder: above the previous one, and above any epoch handed out before now
    (the clock in ms), so a lease row that was deleted (DynamoDB TTL, a reset state store) still
    yields a larger epoch than the target's fence holds."""
    return max(previous + 1, int(now * 1000))


class LeaseStore(ABC):
    @abstractmethod
    def acquire(self, entity: str, owner: str, ttl_s: float) -> Lease:
        """Take (or re-take, if ``owner`` already holds it) the lease, or raise :class:`LeaseHeldError`."""

    @abstractmethod
    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        """Extend the lease; :class:`LeaseLostError` if ``owner`` no longer holds it."""

    @abstractmethod
    def release(self, entity: str, owner: str) -> bool:
        """Give the lease up; ``False`` if ``owner`` did not hold it (nothing is changed then)."""

    @abstractmethod
    def holder(self, entity: str) -> Lease | None: ...

    @abstractmethod
    def release_if_unchanged(self, seen: Lease) -> bool:
        """Release the lease ``seen`` (by anyone, see ``lease_takeover``) only if the row still holds
        that owner, expiry and epoch; ``False`` if it changed (renewed, released or taken) since."""


class SqliteLeaseStore(LeaseStore):
    """A released lease keeps its row (no owner, expired) so that its epoch is never handed out again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS etl_leases (entity TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                "expires_at REAL NOT NULL, acquired_at REAL NOT NULL, epoch INTEGER NOT NULL DEFAULT 0)"
            )
            if "epoch" not in {row[1] for row in conn.execute("PRAGMA table_info(etl_leases)")}:
                conn.execute("ALTER TABLE etl_leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit, so BEGIN IMMEDIATE takes the write lock
        # before the read and two acquirers cannot both see the lease free.
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def acquire(self, entity: str, owner: str, ttl_s: float) -> Lease:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            row = conn.execute(
                "SELECT owner, expires_at, acquired_at, epoch FROM etl_leases WHERE entity = ?", (entity,)
            ).fetchone()
            if row and row[0] and row[0] != owner and row[1] >= now:
                conn.execute("ROLLBACK")
                raise LeaseHeldError(entity, Lease(entity, row[0], row[1], row[2], row[3]))
            mine = bool(row) and row[0] == owner
            lease = Lease(
                entity,
                owner,
                now + ttl_s,
                row[2] if mine else now,
                row[3] if mine else next_epoch(row[3] if row else 0, now),
            )
            conn.execute(
                "INSERT OR REPLACE INTO etl_leases (entity, owner, expires_at, acquired_at, epoch) "
                "VALUES (?, ?, ?, ?, ?)",
                (entity, owner, lease.expires_at, lease.acquired_at, lease.epoch),
            )
            conn.execute("COMMIT")
            return lease

    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        with contextlib.closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            expires = time.time() + ttl_s
            changed = conn.execute(
                "UPDATE etl_leases SET expires_at = ? WHERE entity = ? AND owner = ?", (expires, entity, owner)
            ).rowcount
            if not changed:
                conn.execute("ROLLBACK")
                raise LeaseLostError(f"{entity}: {owner} no longer holds the entity lease")
            row = conn.execute("SELECT acquired_at, epoch FROM etl_leases WHERE entity = ?", (entity,)).fetchone()
            conn.execute("COMMIT")
            return Lease(entity, owner, expires, row[0], row[1])

    def release(self, entity: str, owner: str) -> bool:
        with contextlib.closing(self._connect()) as conn:
            return (
                conn.execute(
                    "UPDATE etl_leases SET owner = '', expires_at = 0 WHERE entity = ? AND owner = ?", (entity, owner)
                ).rowcount
                > 0
            )

    def release_if_unchanged(self, seen: Lease) -> bool:
        with contextlib.closing(self._connect()) as conn:
            return (
                conn.execute(
                    "UPDATE etl_leases SET owner = '', expires_at = 0 "
                    "WHERE entity = ? AND owner = ? AND expires_at = ? AND epoch = ?",
                    (seen.entity, seen.owner, seen.expires_at, seen.epoch),
                ).rowcount
                > 0
            )

    def holder(self, entity: str) -> Lease | None:
        with contextlib.closing(self._connect()) as conn:
            row = conn.execute(
                "SELECT owner, expires_at, acquired_at, epoch FROM etl_leases WHERE entity = ? AND owner <> ''",
                (entity,),
            ).fetchone()
        return Lease(entity, row[0], row[1], row[2], row[3]) if row else None


class DynamoLeaseStore(LeaseStore):
    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client = client or boto3.client("dynamodb")

    @staticmethod
    def table_definition(table_name: str) -> dict[str, Any]:
        return {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "entity", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "entity", "KeyType": "HASH"}],
        }

    def acquire(self, entity: str, owner: str, ttl_s: float) -> Lease:
        """Read the row, then write it on the condition that it is still as read (so the epoch seen is
        the one advanced); a row that changed in between is read again."""
        for _ in range(10):
            seen = self._item(entity)
            now = time.time()
            if seen is not None and seen.owner and seen.owner != owner and seen.expires_at >= now:
                raise LeaseHeldError(entity, seen)
            mine = seen is not None and seen.owner == owner
            lease = Lease(
                entity,
                owner,
                now + ttl_s,
                seen.acquired_at if seen is not None and mine else now,
                seen.epoch if seen is not None and mine else next_epoch(seen.epoch if seen else 0, now),
            )
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key={"entity": {"S": entity}},
                    UpdateExpression="SET #o = :owner, expires_at = :exp, acquired_at = :acq, epoch = :epoch, #ttl = :ttl",
                    ConditionExpression=self._unchanged(seen),
                    ExpressionAttributeNames={"#o": "owner", "#ttl": "ttl"},
                    ExpressionAttributeValues={
                        ":owner": {"S": owner},
                        ":exp": {"N": repr(lease.expires_at)},
                        ":acq": {"N": repr(lease.acquired_at)},
                        ":epoch": {"N": str(lease.epoch)},
                        # DynamoDB TTL (epoch seconds) only tidies old rows; expiry is decided by expires_at.
                        ":ttl": {"N": str(int(lease.expires_at) + 86_400)},
                        **self._seen_values(seen),
                    },
                )
            except self.client.exceptions.ConditionalCheckFailedException:
                continue  # another acquirer, a renewal or a release came in between: look again
            return lease
        raise LeaseHeldError(entity, self.holder(entity) or Lease(entity, "(contended)", time.time(), time.time()))

    @staticmethod
    def _unchanged(seen: Lease | None) -> str:
        if seen is None:
            return "attribute_not_exists(entity)"
        epoch = "epoch = :seen_epoch" if seen.epoch else "(attribute_not_exists(epoch) OR epoch = :seen_epoch)"
        return f"#o = :seen_owner AND expires_at = :seen_exp AND {epoch}"

    @staticmethod
    def _seen_values(seen: Lease | None) -> dict[str, Any]:
        if seen is None:
            return {}
        return {
            ":seen_owner": {"S": seen.owner},
            ":seen_exp": {"N": repr(seen.expires_at)},
            ":seen_epoch": {"N": str(seen.epoch)},
        }

    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        expires = time.time() + ttl_s
        try:
            response = self.client.update_item(
                TableName=self.table_name,
                Key={"entity": {"S": entity}},
                UpdateExpression="SET expires_at = :exp, #ttl = :ttl",
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":exp": {"N": repr(expires)},
                    ":ttl": {"N": str(int(expires) + 86_400)},
                },
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise LeaseLostError(f"{entity}: {owner} no longer holds the entity lease") from None
        item = response["Attributes"]
        return Lease(entity, owner, expires, float(item["acquired_at"]["N"]), int(item.get("epoch", {"N": "0"})["N"]))

    def release(self, entity: str, owner: str) -> bool:
        """Clear the owner and expire the row, keeping its epoch (the ``ttl`` attribute tidies it later)."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"entity": {"S": entity}},
                UpdateExpression="SET #o = :none, expires_at = :zero",
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":none": {"S": ""}, ":zero": {"N": "0"}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_if_unchanged(self, seen: Lease) -> bool:
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"entity": {"S": seen.entity}},
                UpdateExpression="SET #o = :none, expires_at = :zero",
                ConditionExpression=self._unchanged(seen),
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":none": {"S": ""}, ":zero": {"N": "0"}, **self._seen_values(seen)},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _item(self, entity: str) -> Lease | None:
        """The row as stored, a released one (no owner) included."""
        item = self.client.get_item(TableName=self.table_name, Key={"entity": {"S": entity}}, ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        return Lease(
            entity,
            item["owner"]["S"],
            float(item["expires_at"]["N"]),
            float(item["acquired_at"]["N"]),
            int(item.get("epoch", {"N": "0"})["N"]),
        )

    def holder(self, entity: str) -> Lease | None:
        lease = self._item(entity)
        return lease if lease is not None and lease.owner else None


def open_lease_store() -> LeaseStore:
    """Same switch as the run store: ``ETL_STATE_STORE=dynamodb`` (``ETL_LEASES_TABLE``) or ``sqlite``."""
    from entity_etl.runtime.run_store import default_state_path

    kind = os.environ.get("ETL_STATE_STORE", "sqlite")
    if kind == "dynamodb":
        return DynamoLeaseStore(os.environ.get("ETL_LEASES_TABLE", "entity-etl-leases"))
    if kind == "sqlite":
        return SqliteLeaseStore(default_state_path())
    raise ValueError(f"ETL_STATE_STORE={kind!r}: use 'dynamodb' or 'sqlite'")


#: The lease TTL's accepted range, in seconds: below half a second the keeper would renew in a busy
#: loop; above a day a dead holder would block its entity for more than a day.
TTL_RANGE_S = (0.5, 86_400.0)


def default_ttl_s() -> float:
    """``ETL_LEASE_TTL_S`` (default 900), or one :class:`ValueError` line naming it."""
    ttl = settings.env_number("ETL_LEASE_TTL_S", 900.0, low=TTL_RANGE_S[0], high=TTL_RANGE_S[1], unit="seconds")
    assert ttl is not None
    return ttl


def checked_ttl_s(ttl_s: float) -> float:
    if not (math.isfinite(ttl_s) and TTL_RANGE_S[0] <= ttl_s <= TTL_RANGE_S[1]):
        raise ValueError(f"lease TTL {ttl_s!r}: must be a number from {TTL_RANGE_S[0]:g} to {TTL_RANGE_S[1]:g} s")
    return ttl_s


class LeaseKeeper:
    """Holds an entity lease for the duration of a ``with`` block, renewing it on a thread.

    With ``owner_holds_already`` (an Airflow run whose setup task took the lease) it only verifies and
    renews; otherwise (a stage run by hand) it takes the lease first and releases it at the end.
    ``expected_epoch`` (``ETL_LEASE_EPOCH``, set by the task that submitted the job): the lease must
    still be the one of that epoch.

    It renews every quarter of the TTL and counts the lease lost once the last successful renewal is
    more than half the TTL old (another run may take it at the full TTL): :meth:`check` raises from
    then on, also when a renewal hangs or the whole process was frozen.
    """

    def __init__(
        self,
        store: LeaseStore,
        entity: str,
        owner: str,
        *,
        ttl_s: float | None = None,
        owner_holds_already: bool = False,
        expected_epoch: int | None = None,
    ) -> None:
        import threading

        self.store = store
        self.entity = entity
        self.owner = owner
        self.ttl_s = checked_ttl_s(ttl_s) if ttl_s is not None else default_ttl_s()
        self.owner_holds_already = owner_holds_already
        self.expected_epoch = expected_epoch
        #: The lease as this keeper took or verified it (its epoch is the run's fencing token).
        self.lease: Lease | None = None
        self.lost: LeaseLostError | None = None
        self._renewed = time.monotonic()  # when the last successful renewal was sent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{entity}", daemon=True)

    @property
    def epoch(self) -> int:
        return self.lease.epoch if self.lease is not None else 0

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            sent = time.monotonic()
            try:
                lease = self.store.renew(self.entity, self.owner, self.ttl_s)
            except LeaseLostError as exc:
                self.lost = LeaseLostError(f"{self.entity}: this run ({self.owner}) lost the entity lease: {exc}")
                return
            except Exception as exc:  # a transient store error: try again, until half the TTL has gone
                if self._overdue(f"{type(exc).__name__}: {exc}"):
                    return
                continue
            if lease.epoch != self.epoch:
                self.lost = LeaseLostError(
                    f"{self.entity}: this run ({self.owner}) lost the entity lease: it was taken again "
                    f"(epoch {lease.epoch}, this run has {self.epoch})"
                )
                return
            self._renewed = sent

    def _overdue(self, why: str) -> bool:
        silent = time.monotonic() - self._renewed
        if self.lost is None and silent > self.ttl_s / 2:
            self.lost = LeaseLostError(
                f"{self.entity}: this run ({self.owner}) lost the entity lease: not renewed for {silent:.1f}s, "
                f"over half its {self.ttl_s:g}s TTL, so another run may soon take it ({why})"
            )
        return self.lost is not None

    def check(self) -> None:
        """Raise :class:`LeaseLostError` once the lease is lost; stages call it before each commit
        point (a checkpoint, the end of the stage), so a run that lost its lease stops there."""
        if self.lost is None:
            self._overdue("the renewal did not come back")
        if self.lost is not None:
            raise self.lost

    def __enter__(self) -> LeaseKeeper:
        sent = time.monotonic()
        if self.owner_holds_already:
            try:
                self.lease = self.store.renew(self.entity, self.owner, self.ttl_s)
            except LeaseLostError:
                holder = self.store.holder(self.entity)
                where = f"; it is now held by {holder.describe()}" if holder else ""
                raise LeaseLostError(
                    f"{self.entity}: this run ({self.owner}) does not hold the entity lease{where}"
                ) from None
            if self.expected_epoch is not None and self.lease.epoch != self.expected_epoch:
                raise LeaseLostError(
                    f"{self.entity}: this run ({self.owner}) no longer holds the entity lease of epoch "
                    f"{self.expected_epoch} it was started with (now epoch {self.lease.epoch})"
                )
        else:
            self.lease = self.store.acquire(self.entity, self.owner, self.ttl_s)
        self._renewed = sent
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.owner_holds_already:
            self.store.release(self.entity, self.owner)
