"""The run store in one SQLite file (the embedded default)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Any

from entity_etl.runtime import attempt_history
from entity_etl.runtime.run_store.records import (
    RUN,
    Checkpoint,
    RunStore,
    StageRecord,
    StaleUpdateError,
    _stale_message,
)


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
                -- the run records only (the UI's Entities page: an entity's last runs, newest first)
                CREATE INDEX IF NOT EXISTS etl_runs_last_runs ON etl_runs (entity, started_at) WHERE stage = '_run';
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
