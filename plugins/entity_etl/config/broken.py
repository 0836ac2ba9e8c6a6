"""What a refused entity file still says: enough to keep its DAG listed, scheduled and failing visibly.

A file that stops validating keeps its ``etl_<entity>`` DAG (see ``orchestration/broken_dag.py``):
this module reads, best effort and field by field, what that DAG needs from the raw YAML (merged over
``_defaults.yaml``): the schedule, time zone, start date, tags, owner and ``notify`` settings. Each
value is checked by the same validator as in :class:`EntityConfig`; a value that fails it is dropped
for its default. Only refused files are read again, so parsing valid files costs nothing more.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from entity_etl.config.interpolation import UnsetVariableError, interpolate
from entity_etl.config.loader import LoadResult, _deep_merge, _parse_yaml, load_defaults
from entity_etl.config.model import SCHEDULE_PRESETS, EntityConfig, NotifyConfig
from entity_etl.config.problems import ConfigProblem, EntityConfigError

_DATE: TypeAdapter[dt.date] = TypeAdapter(dt.date)
_DEFAULT_OWNER = "data-platform"
_TAG_MAX_LEN = 100  # Airflow refuses longer tags, and the DAG file would fail for every entity
#: ``EntityConfig.entity``'s own pattern: a file whose name fails it has no DAG id to keep.
_ENTITY_ID = re.compile(
    next(m.pattern for m in EntityConfig.model_fields["entity"].metadata if getattr(m, "pattern", None))
)


@dataclass(frozen=True)
class BrokenEntity:
    """A refused entity file: its problems, and the DAG settings that could still be read from it."""

    entity: str  # the file name's stem: the only id the file can have (the loader refuses any other)
    file: str
    problems: tuple[ConfigProblem, ...]
    schedule: str | None
    schedule_note: str  # where the schedule came from, or why there is none
    timezone: str = "UTC"
    start_date: dt.date | None = None
    tags: tuple[str, ...] = ()
    owner: str = _DEFAULT_OWNER
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    enabled: bool = True  # False only for an explicit `enabled: false`: then the file gets no DAG

    @property
    def dag_id(self) -> str:
        return f"etl_{self.entity}"

    @property
    def cron(self) -> str | None:
        return None if self.schedule is None else SCHEDULE_PRESETS.get(self.schedule, self.schedule)


def broken_entities(result: LoadResult, entities_dir: Path) -> list[BrokenEntity]:
    """One :class:`BrokenEntity` per refused file whose name is a valid entity id (and not a valid entity)."""
    if not result.failed:
        return []
    defaults, _problems = load_defaults(entities_dir)
    broken = []
    for display, problems in result.failed.items():
        stem = Path(display).stem
        if stem in result.entities or not _valid_entity_id(stem):
            continue  # no DAG id to keep: the import error still names the file
        broken.append(salvage(Path(display), defaults, problems, display=display))
    return broken


def _valid_entity_id(name: str) -> bool:
    return _ENTITY_ID.fullmatch(name) is not None


def salvage(
    path: Path, defaults: Mapping[str, Any], problems: list[ConfigProblem], *, display: str | None = None
) -> BrokenEntity:
    raw = _raw_mapping(path)
    data = _deep_merge(defaults, raw)
    # Unset ${VAR}s stay as written: such values fail their checks below and fall back to their defaults.
    with contextlib.suppress(UnsetVariableError):
        data = interpolate(data, os.environ)
    schedule, note = _schedule(data, raw)
    return BrokenEntity(
        entity=path.stem,
        file=display or str(path),
        problems=tuple(problems),
        schedule=schedule,
        schedule_note=note,
        timezone=_checked(EntityConfig._timezone, data.get("timezone"), "UTC"),
        start_date=_checked(_start_date, data.get("start_date"), None),
        tags=tuple(_checked(_tags, data.get("tags"), [])),
        owner=_checked(_owner, data.get("owner"), _DEFAULT_OWNER),
        notify=_checked(NotifyConfig.model_validate, data.get("notify") or {}, NotifyConfig()),
        enabled=data.get("enabled") is not False,
    )


def _raw_mapping(path: Path) -> dict[str, Any]:
    try:
        raw = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, EntityConfigError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _schedule(data: Mapping[str, Any], raw: Mapping[str, Any]) -> tuple[str | None, str]:
    """The schedule and where it came from: the ``schedule`` key, else a misspelling of it (``schedul:``)."""
    if "schedule" in data:
        value = data["schedule"]
        try:
            schedule = EntityConfig._schedule(value)
        except ValueError:
            return None, f"the file's schedule {value!r} is invalid, so this DAG has none (manual runs only)"
        if schedule is None:
            return None, "`schedule: null` (manual runs only)"
        return str(schedule), "read from the file"
    unknown = [key for key in raw if isinstance(key, str) and key not in EntityConfig.model_fields]
    for key in difflib.get_close_matches("schedule", unknown, n=1, cutoff=0.6):
        schedule = _checked(EntityConfig._schedule, data.get(key), None)
        if schedule is not None:
            return str(schedule), f"read from the misspelled key `{key}`"
    return None, "no schedule could be read from the file, so this DAG has none (manual runs only)"


def _checked(check: Any, value: Any, default: Any) -> Any:
    """``check(value)``, or ``default`` when there is no value or the check refuses it."""
    if value is None:
        return default
    try:
        return check(value)
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return default


def _start_date(value: object) -> dt.date:
    return _DATE.validate_python(EntityConfig._date_not_number(value))


def _tags(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(tag, str) and len(tag) <= _TAG_MAX_LEN for tag in value):
        raise ValueError(f"tags must be a list of strings of at most {_TAG_MAX_LEN} characters")
    return value


def _owner(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("owner must be a string")
    return value
