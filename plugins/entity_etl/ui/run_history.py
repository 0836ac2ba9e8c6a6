"""The last runs (stage ``_run`` records) of many entities, newest first, in as few reads as the store allows.

Only what the page shows is read: run id, status, start, and from the summary ``close_run`` stored its
interval, rows loaded and duration (``RunPoint``).

* SQLite: one query per entity on one read-only connection, on the partial index of run records
  (``etl_runs_last_runs``: exactly ``limit`` rows read per entity); the summary's fields are picked in
  SQL (``json_extract``), so no record is decoded in Python.
* DynamoDB: one Query per entity on the ``by_entity_started`` index, newest first, filtered to the run
  records, projected to the attributes shown and paginated until ``limit`` are found: never a Scan.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from entity_etl.runtime.run_store import RUN, DynamoRunStore, RunStore, SqliteRunStore
from entity_etl.runtime.run_summary import SUMMARY_KEY

#: DynamoDB Queries in flight at once (a boto3 client is thread-safe).
QUERY_THREADS = 16
#: Items a DynamoDB page reads per run record wanted: a run has a record per stage (about 7).
_ITEMS_PER_RUN = 8


class RunPoint(NamedTuple):
    """One run as the page shows it (the summary's figures are ``None`` for a run not closed yet; a tuple:
    20,000 of them are built per page)."""

    run_id: str
    status: str
    started_at: str
    interval_start: str | None = None
    interval_end: str | None = None
    rows_loaded: int | None = None
    duration_s: float | None = None


_SUMMARY_FIELDS = ("interval_start", "interval_end", "rows_loaded", "duration_s")
# RUN is a literal here, not a parameter: SQLite uses a partial index only for a WHERE that matches its own.
_SQLITE_LAST_RUNS = (
    "SELECT run_id, status, started_at, "
    + ", ".join(f"json_extract(stats, '$.{SUMMARY_KEY}.{name}')" for name in _SUMMARY_FIELDS)
    + f" FROM etl_runs WHERE entity = ? AND stage = '{RUN}' ORDER BY started_at DESC LIMIT ?"
)


def last_runs(store: RunStore, entities: Sequence[str], limit: int) -> dict[str, list[RunPoint]]:
    """Entity -> its last ``limit`` runs, newest first (an entity never run: an empty list)."""
    if isinstance(store, SqliteRunStore):
        return _sqlite_last_runs(store, entities, limit)
    if isinstance(store, DynamoRunStore):
        with ThreadPoolExecutor(max_workers=QUERY_THREADS) as pool:
            found = pool.map(lambda entity: _dynamo_last_runs(store, entity, limit), entities)
            return dict(zip(entities, found, strict=True))
    raise TypeError(f"no run history for {store.describe()}")


def _sqlite_last_runs(store: SqliteRunStore, entities: Sequence[str], limit: int) -> dict[str, list[RunPoint]]:
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=30)
    try:
        return {
            entity: list(map(RunPoint._make, conn.execute(_SQLITE_LAST_RUNS, (entity, limit)))) for entity in entities
        }
    finally:
        conn.close()


def _point(item: dict[str, Any]) -> RunPoint:
    """A projected DynamoDB item (run_id, status, started_at, stats: all strings) as a ``RunPoint``."""
    try:
        summary = json.loads(item.get("stats", {}).get("S") or "{}").get(SUMMARY_KEY)
    except (ValueError, AttributeError):
        summary = None
    summary = summary if isinstance(summary, dict) else {}
    return RunPoint(
        item["run_id"]["S"],
        item["status"]["S"],
        item.get("started_at", {}).get("S", ""),
        *(summary.get(name) for name in _SUMMARY_FIELDS),
    )


def _dynamo_last_runs(store: DynamoRunStore, entity: str, limit: int) -> list[RunPoint]:
    request: dict[str, Any] = {
        "TableName": store.table_name,
        "IndexName": "by_entity_started",
        "KeyConditionExpression": "entity = :e",
        "FilterExpression": "#stage = :run",
        "ProjectionExpression": "run_id, #status, started_at, stats",
        "ExpressionAttributeNames": {"#stage": "stage", "#status": "status"},
        "ExpressionAttributeValues": {":e": {"S": entity}, ":run": {"S": RUN}},
        "ScanIndexForward": False,
        "Limit": limit * _ITEMS_PER_RUN,
    }
    points: list[RunPoint] = []
    while len(points) < limit:
        page = store.client.query(**request)
        points.extend(_point(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return points[:limit]
