"""The last run records (stage ``_run``) of many entities, newest first, in as few reads as the store allows.

* SQLite: one indexed query per entity on one connection (the ``(entity, started_at)`` index, newest first).
* DynamoDB: one Query per entity on the ``by_entity_started`` index, newest first, filtered to the run
  records and paginated until ``limit`` are found: never a Scan.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from entity_etl.runtime.run_store import RUN, DynamoRunStore, RunStore, SqliteRunStore, StageRecord

#: DynamoDB Queries in flight at once (a boto3 client is thread-safe).
QUERY_THREADS = 16
#: Items a DynamoDB page reads per run record wanted: a run has a record per stage (about 7).
_ITEMS_PER_RUN = 8


def last_runs(store: RunStore, entities: Sequence[str], limit: int) -> dict[str, list[StageRecord]]:
    """Entity -> its last ``limit`` run records, newest first (an entity never run: an empty list)."""
    if isinstance(store, SqliteRunStore):
        return _sqlite_last_runs(store, entities, limit)
    if isinstance(store, DynamoRunStore):
        with ThreadPoolExecutor(max_workers=QUERY_THREADS) as pool:
            found = pool.map(lambda entity: _dynamo_last_runs(store, entity, limit), entities)
            return dict(zip(entities, found, strict=True))
    raise TypeError(f"no run history for {store.describe()}")


def _sqlite_last_runs(store: SqliteRunStore, entities: Sequence[str], limit: int) -> dict[str, list[StageRecord]]:
    found: dict[str, list[StageRecord]] = {entity: [] for entity in entities}
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=30)
    try:
        for entity in entities:  # each walks the (entity, started_at) index backwards: a few rows read
            rows = conn.execute(
                "SELECT run_id, status, attempt, started_at, ended_at, stats, error FROM etl_runs"
                " WHERE entity = ? AND stage = ? ORDER BY started_at DESC LIMIT ?",
                (entity, RUN, limit),
            ).fetchall()
            found[entity] = [
                StageRecord(entity, run_id, RUN, status, attempt, started_at, ended_at, json.loads(stats), error)
                for run_id, status, attempt, started_at, ended_at, stats, error in rows
            ]
    finally:
        conn.close()
    return found


def _dynamo_last_runs(store: DynamoRunStore, entity: str, limit: int) -> list[StageRecord]:
    request: dict[str, Any] = {
        "TableName": store.table_name,
        "IndexName": "by_entity_started",
        "KeyConditionExpression": "entity = :e",
        "FilterExpression": "#s = :run",
        "ExpressionAttributeNames": {"#s": "stage"},
        "ExpressionAttributeValues": {":e": {"S": entity}, ":run": {"S": RUN}},
        "ScanIndexForward": False,
        "Limit": limit * _ITEMS_PER_RUN,
    }
    records: list[StageRecord] = []
    while len(records) < limit:
        page = store.client.query(**request)
        records.extend(store._record(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return records[:limit]
