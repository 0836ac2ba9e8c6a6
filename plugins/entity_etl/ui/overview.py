"""The rows of the Entities page: per entity, its last run's figures and the trend of its last runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from entity_etl.runtime.run_store import RunStore
from entity_etl.ui.entity_list import EntityInfo
from entity_etl.ui.run_history import RunPoint, last_runs

#: How many runs the trend shows.
TREND_RUNS = 20


@dataclass(frozen=True)
class EntityRow:
    info: EntityInfo
    last_run_id: str = ""
    last_started: str = ""
    status: str = "never run"
    interval: tuple[str, str] | None = None
    rows_loaded: int | None = None
    duration_s: float | None = None
    #: Oldest first: rows loaded and duration of the last runs (``None`` where a run has no figure).
    rows_trend: list[int | None] = field(default_factory=list)
    duration_trend: list[float | None] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "entity": self.info.entity,
            "dag_id": self.info.dag_id,
            "schedule": self.info.schedule,
            "problem": self.info.problem,
            "last_run_id": self.last_run_id,
            "last_started": self.last_started,
            "status": self.status,
            "interval_start": self.interval[0] if self.interval else None,
            "interval_end": self.interval[1] if self.interval else None,
            "rows_loaded": self.rows_loaded,
            "duration_s": self.duration_s,
            "rows_trend": self.rows_trend,
            "duration_trend": self.duration_trend,
        }


def _row(info: EntityInfo, runs: list[RunPoint]) -> EntityRow:
    if not runs:
        return EntityRow(info)
    last, oldest_first = runs[0], runs[::-1]
    start, end = last.interval_start, last.interval_end
    return EntityRow(
        info,
        last_run_id=last.run_id,
        last_started=last.started_at,
        status=last.status,
        interval=(str(start), str(end)) if start and end else None,
        rows_loaded=last.rows_loaded,
        duration_s=last.duration_s,
        rows_trend=[r.rows_loaded for r in oldest_first],
        duration_trend=[r.duration_s for r in oldest_first],
    )


def entity_rows(store: RunStore, entities: list[EntityInfo], runs: int = TREND_RUNS) -> list[EntityRow]:
    """One row per entity, in the order given, from the last ``runs`` run records of each."""
    history = last_runs(store, [e.entity for e in entities], runs)
    return [_row(info, history.get(info.entity, [])) for info in entities]
