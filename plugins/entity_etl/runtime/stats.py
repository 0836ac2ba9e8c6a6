"""The typed statistics record every stage returns (to XCom, to stdout, and later to the run store)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageStats:
    entity: str
    stage: str
    run_id: str
    rows_in: int = 0
    rows_out: int = 0
    duplicates_removed: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageStats:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


COLUMNS = ("entity", "stage", "rows_in", "rows_out", "duplicates_removed", "bytes", "duration_s")


def format_table(stats: list[StageStats]) -> str:
    """A plain-text table of stage statistics (used by ``make demo`` and ``etlctl``)."""
    header = ["entity", "stage", "rows in", "rows out", "dupes removed", "bytes", "seconds"]
    rows = [
        [
            s.entity,
            s.stage,
            f"{s.rows_in:,}",
            f"{s.rows_out:,}",
            f"{s.duplicates_removed:,}",
            f"{s.bytes:,}",
            f"{s.duration_s:.2f}",
        ]
        for s in stats
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
