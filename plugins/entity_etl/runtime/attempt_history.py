"""The run store's attempt history: the last state of every attempt of every stage.

The main record of a stage (``run_store``) holds only its latest attempt; a retried stage's earlier
tries would be lost. So every update the main record *accepts* (its conditional write decides, the
history never does) is also written here, keyed by attempt number, overwriting that attempt's
earlier state. ``etlctl runs`` reads it to show every try.

* SQLite: table ``etl_attempts``, written in the same transaction as the main record.
* DynamoDB: items with sort key ``#attempt#<run_id>#<stage>#<attempt:06d>`` in the runs table, written
  right after the main record's accepted ``PutItem``; like chunk checkpoints they carry no
  ``started_at``/``day`` attribute, so they stay out of both audit indexes (the record is one JSON
  ``data`` attribute). If the process dies between the two writes, that attempt's last state is
  only in the main record, until a later attempt replaces it there.

The functions deal in plain dicts (``dataclasses.asdict`` of a ``StageRecord``), so this module does
not import the run store.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS etl_attempts (
    entity TEXT NOT NULL, run_id TEXT NOT NULL, stage TEXT NOT NULL, attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (entity, run_id, stage, attempt)
);
"""

PREFIX = "#attempt#"


def sqlite_put(conn: sqlite3.Connection, record: dict[str, Any]) -> None:
    """Store ``record`` as its attempt's state (call inside the main record's transaction)."""
    conn.execute(
        "INSERT OR REPLACE INTO etl_attempts (entity, run_id, stage, attempt, started_at, data) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            record["entity"],
            record["run_id"],
            record["stage"],
            record["attempt"],
            record["started_at"],
            json.dumps(record, sort_keys=True, default=str),
        ),
    )


def sqlite_records(conn: sqlite3.Connection, entity: str, since: str | None) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT data FROM etl_attempts WHERE entity = ? AND started_at >= ? ORDER BY started_at, stage, attempt",
        (entity, since or ""),
    ).fetchall()
    return [json.loads(row[0]) for row in rows]


def dynamo_key(record: dict[str, Any]) -> str:
    return f"{PREFIX}{record['run_id']}#{record['stage']}#{int(record['attempt']):06d}"


def dynamo_put(client: Any, table: str, record: dict[str, Any]) -> None:
    client.put_item(
        TableName=table,
        Item={
            "entity": {"S": record["entity"]},
            "record": {"S": dynamo_key(record)},
            "data": {"S": json.dumps(record, sort_keys=True, default=str)},
        },
    )


def dynamo_records(client: Any, table: str, entity: str, since: str | None) -> list[dict[str, Any]]:
    """A Query of the entity's history items (the key prefix), filtered by start here."""
    found: list[dict[str, Any]] = []
    for page in client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="entity = :e AND begins_with(#r, :prefix)",
        ExpressionAttributeNames={"#r": "record"},
        ExpressionAttributeValues={":e": {"S": entity}, ":prefix": {"S": PREFIX}},
        ConsistentRead=True,
    ):
        found.extend(json.loads(item["data"]["S"]) for item in page.get("Items", []))
    return [r for r in found if r.get("started_at", "") >= (since or "")]
