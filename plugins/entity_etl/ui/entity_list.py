"""The entities the page lists, from the entity files; parsed again only when a file changed."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from entity_etl.config.loader import default_paths, entity_files, load_entities


@dataclass(frozen=True)
class EntityInfo:
    entity: str
    dag_id: str
    schedule: str  # the cron expression, "manual only" or "disabled"
    problem: str = ""  # an entity file that does not validate: its first problem


_lock = threading.Lock()
_cache: dict[tuple[object, ...], list[EntityInfo]] = {}


def _fingerprint(entities_dir: Path, sql_dir: Path) -> tuple[object, ...]:
    files = [*entities_dir.glob("_*.y*ml"), *entity_files(entities_dir)]
    return (str(entities_dir), str(sql_dir), *sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))


def _read(entities_dir: Path, sql_dir: Path) -> list[EntityInfo]:
    result = load_entities(entities_dir, sql_dir)
    found = {
        name: EntityInfo(
            name,
            config.dag_id,
            "disabled" if not config.enabled else (config.schedule or "manual only"),
        )
        for name, config in result.entities.items()
    }
    for source, problems in result.failed.items():
        name = Path(source).stem
        found.setdefault(
            name, EntityInfo(name, f"etl_{name}", "?", problem=str(problems[0]) if problems else "invalid")
        )
    return [found[name] for name in sorted(found)]


def entities(entities_dir: Path | None = None, sql_dir: Path | None = None) -> list[EntityInfo]:
    """Every entity file's entity, sorted by name (the last parse while no file changed)."""
    default_entities, default_sql = default_paths()
    entities_dir, sql_dir = entities_dir or default_entities, sql_dir or default_sql
    key = _fingerprint(entities_dir, sql_dir)
    with _lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = _read(entities_dir, sql_dir)
        return _cache[key]
