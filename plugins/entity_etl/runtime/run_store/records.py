"""The records the run store holds and the store's port: :class:`StageRecord`, :class:`Checkpoint`,
the ordering rule (``STATUS_RANK``) and :class:`RunStore`."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

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


def _stale_message(record: StageRecord, current: StageRecord | None) -> str:
    held = f"{current.status} (attempt {current.attempt})" if current else "a later state"
    return (
        f"{record.entity}: run {record.run_id!r} stage {record.stage}: rejected {record.status} "
        f"(attempt {record.attempt}); the store already holds {held}"
    )
