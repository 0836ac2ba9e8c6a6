"""Load and validate ``include/entities/*.yaml``.

Only files are read (no DB, no network), so this is safe at DAG parse time. Every problem is
reported as ``file: field: message``; one bad file never hides the others. Across files, a staging
table that is another file's staging or target table refuses both files (``table_identity``).
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from entity_etl.config.interpolation import UnsetVariableError, interpolate, placeholders
from entity_etl.config.model import EntityConfig
from entity_etl.config.problems import FIELD_ERROR, ConfigProblem, EntityConfigError, format_loc
from entity_etl.config.table_identity import table_clashes
from entity_etl.config.validation_memo import ValidationMemo
from entity_etl.runtime.settings import include_dir

try:  # libyaml's parser: much faster than PyYAML's pure-Python one (bench/README.md)
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # a PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

DEFAULTS_FILE = "_defaults.yaml"


class _Yaml12BoolLoader(_SafeLoader):
    """SafeLoader where only true/false are booleans (as in YAML 1.2).

    PyYAML follows YAML 1.1, where unquoted ``no``, ``off``, ``yes``, ``on`` are booleans, so
    ``entity: no`` (Norway) would silently become ``False``. Boolean fields are strict, so there
    those words (and ``"true"``, ``1``) are errors.
    """


class _Yaml12BoolPyLoader(yaml.SafeLoader):
    """The same, in pure Python: only to word the error when libyaml rejects a file (see ``_parse_yaml``)."""


for _loader in (_Yaml12BoolLoader, _Yaml12BoolPyLoader):
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


@dataclass
class LoadResult:
    entities: dict[str, EntityConfig] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    #: Every refused entity file (as problems name it) -> the problems that refused it: its own, a
    #: staging table shared with another file, or a broken ``_defaults.yaml``.
    failed: dict[str, list[ConfigProblem]] = field(default_factory=dict)

    @property
    def enabled(self) -> dict[str, EntityConfig]:
        return {k: v for k, v in self.entities.items() if v.enabled}


def default_paths() -> tuple[Path, Path]:
    """``(entities_dir, sql_dir)``: from ``ETL_ENTITIES_DIR``/``ETL_SQL_DIR``, else under :func:`include_dir`."""
    include = include_dir()
    entities = Path(os.environ.get("ETL_ENTITIES_DIR", include / "entities"))
    sql = Path(os.environ.get("ETL_SQL_DIR", include / "sql"))
    return entities, sql


def entity_files(entities_dir: Path) -> list[Path]:
    """Entity files: ``*.yaml``/``*.yml`` not starting with ``_`` or ``.``."""
    if not entities_dir.is_dir():
        return []
    return sorted(
        p
        for p in entities_dir.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.name.startswith(("_", ".")) and p.is_file()
    )


def _read_text(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EntityConfigError([ConfigProblem(display, "-", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EntityConfigError([ConfigProblem(display, "-", f"cannot read file: {exc}")]) from None


def _parse_yaml(text: str, display: str) -> Any:
    try:
        return yaml.load(text, Loader=_Yaml12BoolLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        pass
    # libyaml words some errors more tersely than PyYAML (no alias name, no offending character), so a
    # rejected file is parsed again in pure Python: its result, or its error, is what the user gets.
    try:
        return yaml.load(text, Loader=_Yaml12BoolPyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "-"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EntityConfigError([ConfigProblem(display, where, f"invalid YAML: {problem}")]) from None


def _read_yaml(path: Path, display: str) -> Any:
    return _parse_yaml(_read_text(path, display), display)


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _unwrap(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (through Optional, list, dict), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _unwrap(arg)
            if found is not None:
                return found
    return None


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = EntityConfig
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model


def _problem_from_error(display: str, err: Any) -> ConfigProblem:
    loc = tuple(err["loc"])
    msg = err["msg"]
    if err["type"] == FIELD_ERROR:  # a check across fields, naming the field it is about
        loc += tuple(err["ctx"]["loc"])
        msg = err["ctx"]["message"]
    path = format_loc(loc)
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        unknown = str(loc[-1])
        msg = f"unknown key {unknown!r}"
        if parent is not None:
            allowed = list(parent.model_fields)
            close = difflib.get_close_matches(unknown, allowed, n=1, cutoff=0.6)
            msg += f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return ConfigProblem(display, path, msg)


def load_entity(
    path: Path,
    *,
    sql_dir: Path,
    defaults: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    display: str | None = None,
) -> EntityConfig:
    """Validate one entity file; raise :class:`EntityConfigError` listing every problem."""
    display = display or str(path)
    env = os.environ if env is None else env
    checked = _check_text(path, _read_text(path, display), display, defaults or {}, env)
    return _with_sql_file(checked, sql_dir.resolve(), display)


@dataclass(frozen=True)
class _Checked:
    """What an entity file's text says, before the SQL file check: its config, or why it has none."""

    config: EntityConfig | None
    problems: tuple[ConfigProblem, ...]
    env_names: frozenset[str] = frozenset()  # the variables its ``${VAR}`` references read


def _check_text(path: Path, text: str, display: str, defaults: Mapping[str, Any], env: Mapping[str, str]) -> _Checked:
    try:
        raw = _parse_yaml(text, display)
    except EntityConfigError as exc:
        return _Checked(None, tuple(exc.problems))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return _Checked(None, (ConfigProblem(display, "-", "top level must be a mapping of keys"),))
    data = _deep_merge(defaults, raw)
    data.setdefault("entity", path.stem)
    found = placeholders(data)
    env_names = frozenset(name for escaped, name in found if not escaped)
    if found:  # without any, interpolate() would return an equal copy
        try:
            data = interpolate(data, env)
        except UnsetVariableError as exc:
            return _Checked(None, (ConfigProblem(display, exc.path, str(exc)),), env_names)

    problems: list[ConfigProblem] = []
    if data.get("entity") != path.stem:
        problems.append(
            ConfigProblem(display, "entity", f"{data.get('entity')!r} must match the file name {path.stem!r}")
        )
    try:
        config = EntityConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problem_from_error(display, err) for err in exc.errors())
        return _Checked(None, tuple(problems), env_names)
    return _Checked(config, tuple(problems), env_names)


def _with_sql_file(checked: _Checked, sql_dir: Path, display: str) -> EntityConfig:
    """The checked config, once its extract query is known to be a file inside ``sql_dir`` (resolved)."""
    problems = list(checked.problems)
    config = checked.config
    if config is None:
        raise EntityConfigError(problems)
    sql_file = (sql_dir / config.source.extract_sql).resolve()
    if not sql_file.is_relative_to(sql_dir):
        problems.append(ConfigProblem(display, "source.extract_sql", "must stay inside include/sql/"))
    elif not sql_file.is_file():
        problems.append(ConfigProblem(display, "source.extract_sql", f"SQL file not found: {sql_file}"))
    if problems:
        raise EntityConfigError(problems)
    return config


#: ``load_entities`` validates a file once per process while its text, the defaults and the environment
#: variables it references stay the same (both DAG files load every entity file).
_MEMO: ValidationMemo[_Checked] = ValidationMemo()


def clear_memo() -> None:
    """Forget every validated file (the next ``load_entities`` parses and validates them all again)."""
    _MEMO.clear()


def load_defaults(entities_dir: Path) -> tuple[dict[str, Any], list[ConfigProblem]]:
    path = entities_dir / DEFAULTS_FILE
    if not path.exists():
        return {}, []
    try:
        data = _read_yaml(path, str(path))
    except EntityConfigError as exc:
        return {}, exc.problems
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [ConfigProblem(str(path), "-", "top level must be a mapping of keys")]
    return data, []


def load_entities(
    entities_dir: Path | None = None,
    sql_dir: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    only: str | None = None,
) -> LoadResult:
    """Load every entity file. ``only`` restricts loading to one entity id (fast task start-up)."""
    default_entities, default_sql = default_paths()
    entities_dir = entities_dir or default_entities
    sql_dir = sql_dir or default_sql
    env = os.environ if env is None else env
    result = LoadResult()
    defaults, problems = load_defaults(entities_dir)
    result.problems.extend(problems)
    if problems:
        result.failed = {str(p): list(problems) for p in entity_files(entities_dir) if only in (None, p.stem)}
        return result
    defaults_key = repr(defaults)
    sql_root = sql_dir.resolve()
    files: dict[str, str] = {}  # entity -> its file, as problems name it
    for path in entity_files(entities_dir):
        if only is not None and path.stem != only:
            continue
        display = str(path)
        try:
            text = _read_text(path, display)
            checked = _MEMO.get(display, text, defaults_key, env)
            if checked is None:
                checked = _check_text(path, text, display, defaults, env)
                _MEMO.put(display, text, defaults_key, checked.env_names, env, checked)
            config = _with_sql_file(checked, sql_root, display)
        except EntityConfigError as exc:
            result.problems.extend(exc.problems)
            result.failed[display] = list(exc.problems)
            continue
        result.entities[config.entity] = config
        files[config.entity] = display
    if only is None:  # with `only`, a task of one entity is starting: the full parse checks across files
        _refuse_shared_tables(result, files)
    return result


def _refuse_shared_tables(result: LoadResult, files: Mapping[str, str]) -> None:
    """Report every staging table that is another file's staging or target table, and drop both files."""
    clashes = table_clashes((files[entity], config) for entity, config in result.entities.items())
    if not clashes:
        return
    result.problems.extend(clash.problem for clash in clashes)
    for clash in clashes:
        result.failed.setdefault(clash.file, []).append(clash.problem)
        result.failed.setdefault(clash.other_file, []).append(clash.problem)
    refused = {clash.file for clash in clashes} | {clash.other_file for clash in clashes}
    result.entities = {e: c for e, c in result.entities.items() if files[e] not in refused}


def find_entity(entity: str, entities_dir: Path | None = None, sql_dir: Path | None = None) -> EntityConfig:
    """Load one entity by id, raising :class:`EntityConfigError` if it is missing or invalid."""
    default_entities, default_sql = default_paths()
    entities_dir = entities_dir or default_entities
    sql_dir = sql_dir or default_sql
    defaults, problems = load_defaults(entities_dir)
    if problems:
        raise EntityConfigError(problems)
    for suffix in (".yaml", ".yml"):
        path = entities_dir / f"{entity}{suffix}"
        if path.exists():
            return load_entity(path, sql_dir=sql_dir, defaults=defaults)
    raise EntityConfigError(
        [ConfigProblem(str(entities_dir / f"{entity}.yaml"), "entity", f"no entity file for {entity!r}")]
    )
