"""A per-process memo of validated entity files, so that parsing the DAG folder validates each file once.

Both DAG files, ``etl_entities.py`` and ``etl_config_errors.py``, load every entity file. A process that
parses both, or parses the folder again (a ``DagBag``, ``airflow dags list``, the tests), would
otherwise validate every file each time. Airflow 3's DAG processor parses each file in a fresh forked
process, so there the memo lasts for one file's parse only. An entry is reused only
while everything its outcome depends on is unchanged: the file's path and text, the defaults, and the
values of the environment variables that the file's ``${VAR}`` references name. Callers keep whatever
is not a function of those (the SQL file check) out of the memo.

Hand-written rather than ``functools.lru_cache``: part of the key (which environment variables matter)
is only known once the file has been parsed, and an entry is replaced, not added to, when its file
changes, so the memo holds at most one entry per file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: More files than any deployment has; the oldest entry goes first beyond it.
MAX_FILES = 20_000


@dataclass(frozen=True)
class _Entry(Generic[T]):
    text: str
    context: str
    env: tuple[tuple[str, str | None], ...]
    value: T


class ValidationMemo(Generic[T]):
    """``value`` per file path, valid for one (text, context, referenced environment values)."""

    def __init__(self, max_files: int = MAX_FILES) -> None:
        self._entries: dict[str, _Entry[T]] = {}
        self._max_files = max_files

    def get(self, path: str, text: str, context: str, env: Mapping[str, str]) -> T | None:
        entry = self._entries.get(path)
        if entry is None or entry.text != text or entry.context != context:
            return None
        if any(env.get(name) != value for name, value in entry.env):
            return None
        return entry.value

    def put(
        self, path: str, text: str, context: str, env_names: Iterable[str], env: Mapping[str, str], value: T
    ) -> None:
        if path not in self._entries and len(self._entries) >= self._max_files:
            del self._entries[next(iter(self._entries))]
        referenced = tuple((name, env.get(name)) for name in sorted(env_names))
        self._entries[path] = _Entry(text, context, referenced, value)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
