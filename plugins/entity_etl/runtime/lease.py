"""The entity lease: at most one live run per entity, across backfills, environments and hand-run jobs.

``max_active_runs=1`` only covers one DAG's scheduled runs. The lease is a row per entity with an
owner and an expiry, taken with a conditional write (DynamoDB ``attribute_not_exists OR expired OR
mine``; a ``BEGIN IMMEDIATE`` transaction on SQLite). A holder that dies stops renewing, its lease
expires, and the next run takes it over — the entity is never blocked for ever.
"""

from __future__ import annotations

import os
import sqlite3
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Lease:
    entity: str
    owner: str
    expires_at: float
    acquired_at: float

    def describe(self) -> str:
        left = max(0, int(self.expires_at - time.time()))
        return f"{self.owner} (expires in {left}s)"


class LeaseHeldError(RuntimeError):
    def __init__(self, entity: str, holder: Lease) -> None:
        super().__init__(f"{entity}: the entity lease is held by {holder.describe()}")
        self.holder = holder


class LeaseLostError(RuntimeError):
    pass


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


class SqliteLeaseStore(LeaseStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS etl_leases (entity TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                "expires_at REAL NOT NULL, acquired_at REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit, so BEGIN IMMEDIATE takes the write lock
        # before the read and two acquirers cannot both see the lease free.
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    def acquire(self, entity: str, owner: str, ttl_s: float) -> Lease:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = time.time()
            row = conn.execute(
                "SELECT owner, expires_at, acquired_at FROM etl_leases WHERE entity = ?", (entity,)
            ).fetchone()
            if row and row[0] != owner and row[1] >= now:
                conn.execute("ROLLBACK")
                raise LeaseHeldError(entity, Lease(entity, row[0], row[1], row[2]))
            acquired = row[2] if row and row[0] == owner else now
            conn.execute(
                "INSERT OR REPLACE INTO etl_leases (entity, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)",
                (entity, owner, now + ttl_s, acquired),
            )
            conn.execute("COMMIT")
            return Lease(entity, owner, now + ttl_s, acquired)
        finally:
            conn.close()

    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        conn = self._connect()
        try:
            expires = time.time() + ttl_s
            changed = conn.execute(
                "UPDATE etl_leases SET expires_at = ? WHERE entity = ? AND owner = ?", (expires, entity, owner)
            ).rowcount
            if not changed:
                raise LeaseLostError(f"{entity}: {owner} no longer holds the entity lease")
            row = conn.execute("SELECT acquired_at FROM etl_leases WHERE entity = ?", (entity,)).fetchone()
            return Lease(entity, owner, expires, row[0])
        finally:
            conn.close()

    def release(self, entity: str, owner: str) -> bool:
        conn = self._connect()
        try:
            return conn.execute("DELETE FROM etl_leases WHERE entity = ? AND owner = ?", (entity, owner)).rowcount > 0
        finally:
            conn.close()

    def holder(self, entity: str) -> Lease | None:
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT owner, expires_at, acquired_at FROM etl_leases WHERE entity = ?", (entity,)
            ).fetchone()
        finally:
            conn.close()
        return Lease(entity, row[0], row[1], row[2]) if row else None


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
        now = time.time()
        expires = now + ttl_s
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"entity": {"S": entity}},
                UpdateExpression=("SET #o = :owner, expires_at = :exp, acquired_at = :now, #ttl = :ttl"),
                ConditionExpression="attribute_not_exists(entity) OR expires_at < :now OR #o = :owner",
                ExpressionAttributeNames={"#o": "owner", "#ttl": "ttl"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":exp": {"N": repr(expires)},
                    ":now": {"N": repr(now)},
                    # DynamoDB TTL (epoch seconds) only tidies old rows; expiry is decided by expires_at.
                    ":ttl": {"N": str(int(expires) + 86_400)},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            holder = self.holder(entity)
            if holder is None:  # released between our write and our read: try once more
                return self.acquire(entity, owner, ttl_s)
            raise LeaseHeldError(entity, holder) from None
        return Lease(entity, owner, expires, now)

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
        return Lease(entity, owner, expires, float(response["Attributes"]["acquired_at"]["N"]))

    def release(self, entity: str, owner: str) -> bool:
        try:
            self.client.delete_item(
                TableName=self.table_name,
                Key={"entity": {"S": entity}},
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def holder(self, entity: str) -> Lease | None:
        item = self.client.get_item(TableName=self.table_name, Key={"entity": {"S": entity}}, ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        return Lease(entity, item["owner"]["S"], float(item["expires_at"]["N"]), float(item["acquired_at"]["N"]))


def open_lease_store() -> LeaseStore:
    """Same switch as the run store: ``ETL_STATE_STORE=dynamodb`` (``ETL_LEASES_TABLE``) or ``sqlite``."""
    from entity_etl.runtime.run_store import default_state_path

    kind = os.environ.get("ETL_STATE_STORE", "sqlite")
    if kind == "dynamodb":
        return DynamoLeaseStore(os.environ.get("ETL_LEASES_TABLE", "entity-etl-leases"))
    if kind == "sqlite":
        return SqliteLeaseStore(default_state_path())
    raise ValueError(f"ETL_STATE_STORE={kind!r}: use 'dynamodb' or 'sqlite'")


def default_ttl_s() -> float:
    return float(os.environ.get("ETL_LEASE_TTL_S", "900"))


class LeaseKeeper:
    """Holds an entity lease for the duration of a ``with`` block, renewing it on a thread.

    With ``owner_holds_already`` (an Airflow run whose setup task took the lease) it only verifies and
    renews; otherwise (a stage run by hand) it takes the lease first and releases it at the end.
    """

    def __init__(
        self,
        store: LeaseStore,
        entity: str,
        owner: str,
        *,
        ttl_s: float | None = None,
        owner_holds_already: bool = False,
    ) -> None:
        import threading

        self.store = store
        self.entity = entity
        self.owner = owner
        self.ttl_s = ttl_s or default_ttl_s()
        self.owner_holds_already = owner_holds_already
        self.lost: LeaseLostError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{entity}", daemon=True)

    def _renew_loop(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.store.renew(self.entity, self.owner, self.ttl_s)
                renewed = time.monotonic()
            except LeaseLostError as exc:
                self.lost = LeaseLostError(f"{self.entity}: this run ({self.owner}) lost the entity lease: {exc}")
                return
            except Exception as exc:
                # A transient store error: try again next period, until the lease may have expired.
                if time.monotonic() - renewed >= self.ttl_s:
                    self.lost = LeaseLostError(
                        f"{self.entity}: this run ({self.owner}) could not renew the entity lease for "
                        f"{self.ttl_s:.0f}s, so another run may hold it now: {type(exc).__name__}: {exc}"
                    )
                    return

    def check(self) -> None:
        """Raise :class:`LeaseLostError` once the lease is lost; stages call it before each commit
        point (a checkpoint, the end of the stage), so a run that lost its lease stops there."""
        if self.lost is not None:
            raise self.lost

    def __enter__(self) -> LeaseKeeper:
        if self.owner_holds_already:
            try:
                self.store.renew(self.entity, self.owner, self.ttl_s)
            except LeaseLostError:
                holder = self.store.holder(self.entity)
                where = f"; it is now held by {holder.describe()}" if holder else ""
                raise LeaseLostError(
                    f"{self.entity}: this run ({self.owner}) does not hold the entity lease{where}"
                ) from None
        else:
            self.store.acquire(self.entity, self.owner, self.ttl_s)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.owner_holds_already:
            self.store.release(self.entity, self.owner)
