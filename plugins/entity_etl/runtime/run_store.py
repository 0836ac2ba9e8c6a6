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

import datetime as dt
import json
import os
import sqlite3
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from entity_etl.runtime import attempt_history
from entity_etl.runtime.redaction import redact

RUN = "_run"
STATUS_RANK = {"queued": 0, "running": 1, "succeeded": 2, "failed": 2, "skipped": 2}


class StaleUpdateError(RuntimeError):
    """The store already holds a later state for this record; the update was rejected."""


@dataclass(frozen=True)
class StageRecord:
    entity: str
    run_id: str
    stage: str
    status: str
    attempt: int = 1
    started_at: str = field(default_factory=lambda: now_iso())
    ended_at: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    batch_job_id: str = ""
    log_url: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUS_RANK:
            raise ValueError(f"unknown status {self.status!r}; use one of {', '.join(STATUS_RANK)}")
        if self.error:  # every store writes the error redacted, whoever built the record
            object.__setattr__(self, "error", redact(self.error))

    @property
    def day(self) -> str:
        return self.started_at[:10]

    @property
    def rank(self) -> int:
        return STATUS_RANK[self.status]


@dataclass(frozen=True)
class Checkpoint:
    """One finished chunk of a stage. ``plan`` fingerprints what the chunk means (query, chunk key,
    interval, chunk size); a checkpoint of another plan is not a resume point."""

    entity: str
    run_id: str
    stage: str
    chunk: str
    plan: str
    data: dict[str, Any] = field(default_factory=dict)
    written_at: str = field(default_factory=lambda: now_iso())


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class RunStore(ABC):
    @abstractmethod
    def describe(self) -> str:
        """Which store this is, for a header: ``sqlite <path>`` or ``dynamodb table <name>``."""

    @abstractmethod
    def put(self, record: StageRecord) -> None:
        """Write ``record``; raise :class:`StaleUpdateError` if the store holds a later state."""

    @abstractmethod
    def get(self, entity: str, run_id: str, stage: str = RUN) -> StageRecord | None: ...

    @abstractmethod
    def run_records(self, entity: str, run_id: str) -> list[StageRecord]:
        """Every record of one run (the run record and its stages)."""

    @abstractmethod
    def by_entity(self, entity: str, since: str | None = None) -> list[StageRecord]:
        """Records of ``entity`` started at or after ``since`` (ISO date or timestamp), oldest first."""

    @abstractmethod
    def by_day(self, day: str) -> list[StageRecord]:
        """Records of every entity started on ``day`` (YYYY-MM-DD), oldest first."""

    @abstractmethod
    def _history(self, entity: str, since: str | None) -> list[dict[str, Any]]:
        """The attempt history of ``entity`` (``attempt_history``), as dicts."""

    def attempts(self, entity: str, since: str | None = None) -> list[StageRecord]:
        """Every attempt of every record of ``entity`` started at or after ``since``, oldest first: the
        history, with the main records over it (they hold the latest state, also one written before
        the history existed)."""
        merged = {(r["run_id"], r["stage"], r["attempt"]): StageRecord(**r) for r in self._history(entity, since)}
        merged.update({(r.run_id, r.stage, r.attempt): r for r in self.by_entity(entity, since)})
        return sorted(merged.values(), key=lambda r: (r.started_at, r.run_id, r.stage, r.attempt))

    @abstractmethod
    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Record a finished chunk (overwrites the same chunk: redoing a chunk gives the same result)."""

    @abstractmethod
    def checkpoints(self, entity: str, run_id: str, stage: str) -> list[Checkpoint]:
        """The finished chunks of one stage of one run, ordered by chunk id."""

    @abstractmethod
    def clear_checkpoints(self, entity: str, run_id: str, stage: str) -> int:
        """Forget the stage's chunks (a fresh redo); return how many there were."""


# -- SQLite (embedded default) ---------------------------------------------------------------------
class SqliteRunStore(RunStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS etl_runs (
                    entity TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL,
                    status TEXT NOT NULL, status_rank INTEGER NOT NULL, attempt INTEGER NOT NULL,
                    started_at TEXT NOT NULL, ended_at TEXT NOT NULL, day TEXT NOT NULL,
                    stats TEXT NOT NULL, error TEXT NOT NULL, batch_job_id TEXT NOT NULL, log_url TEXT NOT NULL,
                    PRIMARY KEY (entity, run_id, stage)
                );
                CREATE INDEX IF NOT EXISTS etl_runs_by_entity ON etl_runs (entity, started_at);
                CREATE INDEX IF NOT EXISTS etl_runs_by_day ON etl_runs (day, started_at);
                CREATE TABLE IF NOT EXISTS etl_checkpoints (
                    entity TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL, chunk TEXT NOT NULL,
                    plan TEXT NOT NULL, data TEXT NOT NULL, written_at TEXT NOT NULL,
                    PRIMARY KEY (entity, run_id, stage, chunk)
                );
                """
                + attempt_history.SQLITE_SCHEMA
            )

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def put(self, record: StageRecord) -> None:
        values = asdict(record)
        values.update(
            stats=json.dumps(record.stats, sort_keys=True, default=str), status_rank=record.rank, day=record.day
        )
        with self._connect() as conn:
            cursor = conn.execute(
                """
                INSERT INTO etl_runs (entity, run_id, stage, status, status_rank, attempt, started_at, ended_at,
                                      day, stats, error, batch_job_id, log_url)
                VALUES (:entity, :run_id, :stage, :status, :status_rank, :attempt, :started_at, :ended_at,
                        :day, :stats, :error, :batch_job_id, :log_url)
                ON CONFLICT (entity, run_id, stage) DO UPDATE SET
                    status = excluded.status, status_rank = excluded.status_rank, attempt = excluded.attempt,
                    started_at = excluded.started_at, ended_at = excluded.ended_at, day = excluded.day,
                    stats = excluded.stats, error = excluded.error, batch_job_id = excluded.batch_job_id,
                    log_url = excluded.log_url
                WHERE excluded.attempt > etl_runs.attempt
                   OR (excluded.attempt = etl_runs.attempt AND excluded.status_rank > etl_runs.status_rank)
                """,
                values,
            )
            if cursor.rowcount == 0:
                current = self.get(record.entity, record.run_id, record.stage)
                raise StaleUpdateError(_stale_message(record, current))
            attempt_history.sqlite_put(conn, asdict(record))  # same transaction as the accepted update

    @staticmethod
    def _record(row: sqlite3.Row) -> StageRecord:
        data = dict(row)
        data.pop("status_rank")
        data.pop("day")
        data["stats"] = json.loads(data["stats"])
        return StageRecord(**data)

    def get(self, entity: str, run_id: str, stage: str = RUN) -> StageRecord | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM etl_runs WHERE entity = ? AND run_id = ? AND stage = ?", (entity, run_id, stage)
            ).fetchone()
        return self._record(row) if row else None

    def run_records(self, entity: str, run_id: str) -> list[StageRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM etl_runs WHERE entity = ? AND run_id = ? ORDER BY started_at, stage", (entity, run_id)
            ).fetchall()
        return [self._record(r) for r in rows]

    def by_entity(self, entity: str, since: str | None = None) -> list[StageRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM etl_runs WHERE entity = ? AND started_at >= ? ORDER BY started_at, stage",
                (entity, since or ""),
            ).fetchall()
        return [self._record(r) for r in rows]

    def by_day(self, day: str) -> list[StageRecord]:
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM etl_runs WHERE day = ? ORDER BY started_at, entity, stage", (day,))
            return [self._record(r) for r in rows.fetchall()]

    def _history(self, entity: str, since: str | None) -> list[dict[str, Any]]:
        with self._connect() as conn:
            return attempt_history.sqlite_records(conn, entity, since)

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        values = asdict(checkpoint)
        values["data"] = json.dumps(checkpoint.data, sort_keys=True)
        with self._connect() as conn:
            conn.execute(
                """
                INSERT OR REPLACE INTO etl_checkpoints (entity, run_id, stage, chunk, plan, data, written_at)
                VALUES (:entity, :run_id, :stage, :chunk, :plan, :data, :written_at)
                """,
                values,
            )

    def checkpoints(self, entity: str, run_id: str, stage: str) -> list[Checkpoint]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM etl_checkpoints WHERE entity = ? AND run_id = ? AND stage = ? ORDER BY chunk",
                (entity, run_id, stage),
            ).fetchall()
        return [Checkpoint(**{**dict(r), "data": json.loads(r["data"])}) for r in rows]

    def clear_checkpoints(self, entity: str, run_id: str, stage: str) -> int:
        with self._connect() as conn:
            return conn.execute(
                "DELETE FROM etl_checkpoints WHERE entity = ? AND run_id = ? AND stage = ?", (entity, run_id, stage)
            ).rowcount


def _stale_message(record: StageRecord, current: StageRecord | None) -> str:
    held = f"{current.status} (attempt {current.attempt})" if current else "a later state"
    return (
        f"{record.entity}: run {record.run_id!r} stage {record.stage}: rejected {record.status} "
        f"(attempt {record.attempt}); the store already holds {held}"
    )


# -- DynamoDB (AWS) --------------------------------------------------------------------------------
class DynamoRunStore(RunStore):
    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client = client or boto3.client("dynamodb")

    def describe(self) -> str:
        return f"dynamodb table {self.table_name}"

    @staticmethod
    def table_definition(table_name: str) -> dict[str, Any]:
        """The CreateTable request (also used by the infrastructure template and the tests)."""
        return {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "entity", "AttributeType": "S"},
                {"AttributeName": "record", "AttributeType": "S"},
                {"AttributeName": "started_at", "AttributeType": "S"},
                {"AttributeName": "day", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "entity", "KeyType": "HASH"},
                {"AttributeName": "record", "KeyType": "RANGE"},
            ],
            "LocalSecondaryIndexes": [
                {
                    "IndexName": "by_entity_started",
                    "KeySchema": [
                        {"AttributeName": "entity", "KeyType": "HASH"},
                        {"AttributeName": "started_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "by_day",
                    "KeySchema": [
                        {"AttributeName": "day", "KeyType": "HASH"},
                        {"AttributeName": "started_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        }

    def put(self, record: StageRecord) -> None:
        from boto3.dynamodb.types import TypeSerializer

        item = {
            "entity": record.entity,
            "record": f"{record.run_id}#{record.stage}",
            "run_id": record.run_id,
            "stage": record.stage,
            "status": record.status,
            "status_rank": record.rank,
            "attempt": record.attempt,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "day": record.day,
            "stats": json.dumps(record.stats, sort_keys=True, default=str),
            "error": record.error,
            "batch_job_id": record.batch_job_id,
            "log_url": record.log_url,
        }
        serializer = TypeSerializer()
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item={k: serializer.serialize(v) for k, v in item.items()},
                ConditionExpression=(
                    "attribute_not_exists(#r) OR attempt < :attempt OR (attempt = :attempt AND status_rank < :rank)"
                ),
                ExpressionAttributeNames={"#r": "record"},
                ExpressionAttributeValues={":attempt": {"N": str(record.attempt)}, ":rank": {"N": str(record.rank)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StaleUpdateError(
                _stale_message(record, self.get(record.entity, record.run_id, record.stage))
            ) from None
        attempt_history.dynamo_put(self.client, self.table_name, asdict(record))  # after the accepted update

    @staticmethod
    def _record(item: dict[str, Any]) -> StageRecord:
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        data = {k: deserializer.deserialize(v) for k, v in item.items()}
        return StageRecord(
            entity=data["entity"],
            run_id=data["run_id"],
            stage=data["stage"],
            status=data["status"],
            attempt=int(data["attempt"]) if isinstance(data["attempt"], Decimal | int) else 1,
            started_at=data.get("started_at", ""),
            ended_at=data.get("ended_at", ""),
            stats=json.loads(data.get("stats") or "{}"),
            error=data.get("error", ""),
            batch_job_id=data.get("batch_job_id", ""),
            log_url=data.get("log_url", ""),
        )

    def get(self, entity: str, run_id: str, stage: str = RUN) -> StageRecord | None:
        response = self.client.get_item(
            TableName=self.table_name,
            Key={"entity": {"S": entity}, "record": {"S": f"{run_id}#{stage}"}},
            ConsistentRead=True,
        )
        return self._record(response["Item"]) if "Item" in response else None

    def _query(self, **kwargs: Any) -> list[StageRecord]:
        paginator = self.client.get_paginator("query")
        records: list[StageRecord] = []
        for page in paginator.paginate(TableName=self.table_name, **kwargs):
            records.extend(self._record(item) for item in page.get("Items", []))
        return records

    def run_records(self, entity: str, run_id: str) -> list[StageRecord]:
        records = self._query(
            KeyConditionExpression="entity = :e AND begins_with(#r, :prefix)",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues={":e": {"S": entity}, ":prefix": {"S": f"{run_id}#"}},
            ConsistentRead=True,
        )
        return sorted((r for r in records if r.run_id == run_id), key=lambda r: (r.started_at, r.stage))

    def by_entity(self, entity: str, since: str | None = None) -> list[StageRecord]:
        return self._query(
            IndexName="by_entity_started",
            KeyConditionExpression="entity = :e AND started_at >= :since",
            ExpressionAttributeValues={":e": {"S": entity}, ":since": {"S": since or "0"}},
        )

    def by_day(self, day: str) -> list[StageRecord]:
        return self._query(
            IndexName="by_day",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":d": {"S": day}},
        )

    def _history(self, entity: str, since: str | None) -> list[dict[str, Any]]:
        return attempt_history.dynamo_records(self.client, self.table_name, entity, since)

    # -- chunk checkpoints (sparse: no started_at/day, so never in the audit indexes) ---------------
    @staticmethod
    def _checkpoint_prefix(run_id: str, stage: str) -> str:
        return f"#chunk#{run_id}#{stage}#"

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "entity": {"S": checkpoint.entity},
                "record": {"S": self._checkpoint_prefix(checkpoint.run_id, checkpoint.stage) + checkpoint.chunk},
                "run_id": {"S": checkpoint.run_id},
                "stage": {"S": checkpoint.stage},
                "chunk": {"S": checkpoint.chunk},
                "plan": {"S": checkpoint.plan},
                "data": {"S": json.dumps(checkpoint.data, sort_keys=True)},
                "written_at": {"S": checkpoint.written_at},
            },
        )

    def _checkpoint_items(self, entity: str, run_id: str, stage: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        items: list[dict[str, Any]] = []
        for page in paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="entity = :e AND begins_with(#r, :prefix)",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues={":e": {"S": entity}, ":prefix": {"S": self._checkpoint_prefix(run_id, stage)}},
            ConsistentRead=True,
        ):
            items.extend(page.get("Items", []))
        return items

    def checkpoints(self, entity: str, run_id: str, stage: str) -> list[Checkpoint]:
        found = [
            Checkpoint(
                entity=item["entity"]["S"],
                run_id=item["run_id"]["S"],
                stage=item["stage"]["S"],
                chunk=item["chunk"]["S"],
                plan=item["plan"]["S"],
                data=json.loads(item["data"]["S"]),
                written_at=item["written_at"]["S"],
            )
            for item in self._checkpoint_items(entity, run_id, stage)
        ]
        return sorted(found, key=lambda c: c.chunk)

    def clear_checkpoints(self, entity: str, run_id: str, stage: str) -> int:
        items = self._checkpoint_items(entity, run_id, stage)
        for item in items:
            self.client.delete_item(TableName=self.table_name, Key={"entity": item["entity"], "record": item["record"]})
        return len(items)


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
