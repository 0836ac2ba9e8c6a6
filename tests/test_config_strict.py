"""Strict types, and the JSON Schema agreeing with the validator: every sample bad value is refused by both.

The validator is reached through ``load_entities`` (what ``etlctl validate`` and the DAG files call), on
a YAML file written from the sample; the schema is the one ``make schema`` wrote to
``include/entities/entity.schema.json``, checked with ``jsonschema`` (formats too), on the data as the
loader sees it (``_defaults.yaml`` merged underneath).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from entity_etl.config.loader import _deep_merge, _parse_yaml, entity_files, load_defaults, load_entities
from entity_etl.config.model import ComputeConfig
from entity_etl.config.problems import format_loc
from support.entity_files import EXTRACT, MINIMAL, ROOT, make_include

SCHEMA = json.loads((ROOT / "include" / "entities" / "entity.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

Loc = tuple[int | str, ...]


def _parse(field: str) -> Loc:
    """``columns[3].name`` as ``("columns", 3, "name")``."""
    loc: list[int | str] = []
    for part in field.replace("[", ".[").split("."):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(loc)


def _base() -> dict[str, Any]:
    data = _parse_yaml(MINIMAL.format(name="xx"), "xx.yaml")
    data["translate"] = {"enabled": True, "columns": ["label"], "source_language": "de"}
    data["compute"] = {"vcpu": 1, "memory_mib": 2048, "environment": {"LOG_LEVEL": "INFO"}}
    data["notify"] = {"on_failure": True, "on_success": False, "max_run_minutes": 60}
    data["expect_rows"] = {"min": 0}
    return dict(data)


def _with(data: dict[str, Any], loc: Loc, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``value`` at ``loc`` (the last part may be a new key)."""
    data = copy.deepcopy(data)
    parent: Any = data
    for part in loc[:-1]:
        parent = parent[part]
    parent[loc[-1]] = value
    return data


def _as_json(data: Any) -> Any:
    """The data as an editor's YAML language server sees it: dates are strings."""
    return json.loads(json.dumps(data, default=str))


def _schema_errors(data: dict[str, Any]) -> list[str]:
    return [format_loc(e.absolute_path) for e in VALIDATOR.iter_errors(_as_json(data))]


def _loader_problems(tmp_path: Path, data: dict[str, Any]) -> list[tuple[str, str]]:
    include = make_include(tmp_path)
    (include / "entities" / "xx.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (include / "sql" / "xx").mkdir()
    (include / "sql" / "xx" / "extract.sql").write_text(EXTRACT, encoding="utf-8")
    result = load_entities(include / "entities", include / "sql", env={})
    return [(p.field, p.message) for p in result.problems]


# (field, bad value): the field path the loader must name; the schema's error must sit on it or its parent.
BAD: list[tuple[str, Any]] = [
    # booleans: only true/false
    ("enabled", "yes"),
    ("enabled", "no"),
    ("enabled", "off"),
    ("enabled", "1"),
    ("enabled", 1),
    ("catchup", "true"),
    ("catchup", 0),
    ("translate.enabled", "yes"),
    ("notify.on_success", 1),
    ("notify.on_failure", "on"),
    # integers: only integers (not strings, floats or booleans)
    ("retries", "5"),
    ("retries", 5.5),
    ("source.fetch_rows", "5000"),
    ("source.chunk_rows", 2000.5),
    ("target.chunk_rows", "200000"),
    ("compute.memory_mib", "4096"),
    ("source.split_points", [1.5]),
    ("source.split_points", [True]),
    ("expect_rows.min", "3"),
    ("expect_rows.min", 2.5),
    ("expect_rows.min", True),
    # floats: numbers, not strings or booleans
    ("compute.vcpu", "1"),
    ("retry_delay_minutes", "5"),
    ("lease_wait_minutes", "10"),
    ("notify.max_run_minutes", "60"),
    # enums
    ("dedupe.keep", "latest"),
    ("columns[1].sanitize", ["strip"]),
    # patterns
    ("entity", "XX"),
    ("source.conn_id", "my source"),
    ("source.extract_sql", "xx/extract.txt"),
    ("compute.job_queue", "queue name"),
    ("translate.target_language", "english"),
    ("notify.topic_arn", "arn:aws:sqs:eu-west-1:123456789012:q"),
    ("columns[1].name", "label`"),
    ("columns[0].target", "i d"),
    ("columns[1].type", "varchar2"),
    ("staging.table", "1stg"),
    ("target.table", "t_xx; DROP TABLE users"),
    ("dedupe.key[0]", "id-1"),
    ("start_date", "2026-13-01"),
    ("start_date", 20261101),
    ("schedule", True),
    ("tags", [1]),
    ("description", 5),
    ("compute.environment.ETL_OBJECT_STORE", "s3://elsewhere"),
    ("compute.environment.AWS_ACCESS_KEY_ID", "AKIA"),
    ("compute.environment.AIRFLOW_CONN_ETL_TARGET", "mysql://x"),
    ("compute.environment.1BAD", "x"),
    # unknown keys
    ("retires", 3),
    ("dedupe.oder_by", "changed_at"),
    ("columns[0].nam", "id"),
    ("compute.vcpus", 2),
    ("expect_rows.minimum", 3),
    # minimum / maximum
    ("retries", 11),
    ("retries", -1),
    ("source.fetch_rows", 99),
    ("source.fetch_rows", 1_000_001),
    ("source.chunk_rows", 999),
    ("target.chunk_rows", 0),
    ("compute.memory_mib", 511),
    ("compute.memory_mib", 122_881),
    ("notify.max_run_minutes", 0),
    ("notify.max_run_minutes", -5),
    ("retry_delay_minutes", -1),
    ("retry_delay_minutes", 10**9),
    ("lease_wait_minutes", -0.5),
    ("lease_wait_minutes", 525_601),
    ("dedupe.key", []),
    ("columns", []),
    ("source.split_points", list(range(100))),
    ("expect_rows.min", -1),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v!r}"[:60] for f, v in BAD])
def test_validator_and_schema_both_refuse(tmp_path: Path, field: str, value: Any) -> None:
    base = _base()
    assert _schema_errors(base) == [] and _loader_problems(tmp_path / "ok", base) == []
    data = _with(base, _parse(field), value)

    problems = _loader_problems(tmp_path / "bad", data)
    assert problems, f"the loader accepted {field}: {value!r}"
    (named,) = {f for f, _ in problems}  # one field, never "-": the sample's, or an item of it
    assert named == field or named.startswith((f"{field}[", f"{field}.")), problems

    schema_paths = _schema_errors(data)
    assert schema_paths, f"the JSON Schema accepted {field}: {value!r}"
    parent = field.rsplit(".", 1)[0] if "." in field else "-"
    # the same field, an item of it, or (an unknown key, a refused name) the mapping holding it
    assert any(p.startswith(field) or p == parent for p in schema_paths), schema_paths


GOOD: list[tuple[str, Any]] = [
    ("compute.vcpu", 2),  # a float field takes an int
    ("compute.vcpu", 0.25),
    ("retry_delay_minutes", 0),
    ("lease_wait_minutes", 0),
    ("notify.max_run_minutes", 0.5),
    ("columns[1].type", "Decimal(12, 2)"),
    ("enabled", False),
    ("compute.environment.MY_SETTING", "x"),
    ("compute.environment.etl_lower", "x"),  # not the job's ETL_ settings: names are case-sensitive
    ("source.split_points", [10, 20]),
    ("staging.table", "work.stg_xx"),
    ("expect_rows.min", 1_000_000),
]


@pytest.mark.parametrize(("field", "value"), GOOD, ids=[f"{f}={v!r}" for f, v in GOOD])
def test_validator_and_schema_both_accept(tmp_path: Path, field: str, value: Any) -> None:
    data = _with(_base(), _parse(field), value)
    assert _loader_problems(tmp_path, data) == []
    assert _schema_errors(data) == []


@pytest.mark.parametrize("path", entity_files(ROOT / "include" / "entities"), ids=lambda p: p.name)
def test_shipped_entity_files_pass_both(path: Path) -> None:
    defaults, problems = load_defaults(path.parent)
    assert problems == []
    data = _deep_merge(defaults, _parse_yaml(path.read_text(encoding="utf-8"), str(path)))
    assert _schema_errors(data) == []
    result = load_entities(ROOT / "include" / "entities", ROOT / "include" / "sql", env={})
    assert result.problems == [] and path.stem in result.entities


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("enabled", "yes", "enabled: Input should be a valid boolean"),
        ("retries", "5", "retries: Input should be a valid integer"),
        ("retries", True, "retries: Input should be a valid integer"),
        ("compute.vcpu", True, "compute.vcpu: Input should be a valid number"),
        ("retry_delay_minutes", float("inf"), "retry_delay_minutes: Input should be a finite number"),
        ("start_date", 20261101, "start_date: 20261101 is not a date; write YYYY-MM-DD"),
        (
            "compute.environment.ETL_X",
            "1",
            "compute.environment.ETL_X: 'ETL_X' may not be set by an entity: names starting ETL_, AWS_, "
            "AIRFLOW_CONN_ are the job's own settings, connections and AWS credentials",
        ),
    ],
)
def test_messages_name_the_field(tmp_path: Path, field: str, value: Any, message: str) -> None:
    ((got_field, got_message),) = _loader_problems(tmp_path, _with(_base(), _parse(field), value))
    assert f"{got_field}: {got_message}" == message


def test_interpolated_numbers_are_strings_and_refused(tmp_path: Path) -> None:
    """``${VAR}`` gives a string: a number field refuses it, naming the field."""
    data = _with(_base(), ("compute", "memory_mib"), "${MEMORY}")
    include = make_include(tmp_path)
    (include / "entities" / "xx.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (include / "sql" / "xx").mkdir()
    (include / "sql" / "xx" / "extract.sql").write_text(EXTRACT, encoding="utf-8")
    (problem,) = load_entities(include / "entities", include / "sql", env={"MEMORY": "4096"}).problems
    assert (problem.field, problem.message) == ("compute.memory_mib", "Input should be a valid integer")


@pytest.mark.parametrize("name", ["ETL_TRANSLATOR", "AWS_SECRET_ACCESS_KEY", "AIRFLOW_CONN_ETL_TARGET"])
def test_compute_environment_refuses_the_jobs_own_settings_in_code_too(name: str) -> None:
    """The operator is never handed an entity that overrides the job's settings or credentials."""
    with pytest.raises(ValidationError) as info:
        ComputeConfig(environment={"LOG_LEVEL": "debug", name: "x"})
    ((loc, message),) = [(e["loc"] + e["ctx"]["loc"], e["ctx"]["message"]) for e in info.value.errors()]
    assert loc == ("environment", name) and message.startswith(f"{name!r} may not be set by an entity")
