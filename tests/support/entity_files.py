"""Helpers that write entity YAML + SQL into a throwaway include/ folder."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
entity: {name}
schedule: "@daily"
start_date: 2026-01-01
source:
  conn_id: src_{name}
  extract_sql: {name}/extract.sql
staging:
  table: stg_{name}
target:
  conn_id: tgt
  table: t_{name}
columns:
  - {{name: id, type: string(20)}}
  - {{name: label, type: text}}
  - {{name: amount, type: "decimal(12,2)"}}
  - {{name: changed_at, type: datetime}}
dedupe:
  key: [id]
  keep: newest
  order_by: changed_at
"""

EXTRACT = (
    "SELECT id, label, amount, changed_at FROM src "
    "WHERE changed_at >= :data_interval_start AND changed_at < :data_interval_end"
)


def make_include(tmp: Path, copy_repo: bool = False) -> Path:
    include = tmp / "include"
    if copy_repo:
        shutil.copytree(ROOT / "include", include)
    else:
        (include / "entities").mkdir(parents=True)
        (include / "sql").mkdir()
    return include


def write_entity(include: Path, name: str, text: str | None = None, sql: str | None = EXTRACT) -> Path:
    path = include / "entities" / f"{name}.yaml"
    path.write_text(MINIMAL.format(name=name) if text is None else text, encoding="utf-8")
    if sql is not None:
        (include / "sql" / name).mkdir(parents=True, exist_ok=True)
        (include / "sql" / name / "extract.sql").write_text(sql, encoding="utf-8")
    return path
