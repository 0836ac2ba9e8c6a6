"""Entity config: the strict schema, one assertion per kind of bad config, and `etlctl validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from entity_etl.config.loader import EntityConfigError, load_entities, load_entity
from entity_etl.config.model import EntityConfig
from support.entity_files import MINIMAL, ROOT, make_include, write_entity
from support.pipeline import etlctl_run_stage


def _problems(include: Path, name: str, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = write_entity(include, name, text)
    with pytest.raises(EntityConfigError) as info:
        load_entity(path, sql_dir=include / "sql", env=env or {})
    return [str(p) for p in info.value.problems]


@pytest.fixture
def include(tmp_path: Path) -> Path:
    return make_include(tmp_path)


def test_minimal_entity_loads_with_defaults(include: Path) -> None:
    path = write_entity(include, "xx")
    config = load_entity(path, sql_dir=include / "sql", env={})
    assert config.dag_id == "etl_xx"
    assert config.enabled is True
    assert config.cron == "0 0 * * *"
    assert config.stages == ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
    assert config.compute.job_queue == "etl-fargate"


def test_translate_stage_only_when_enabled(include: Path) -> None:
    text = MINIMAL.format(name="xx") + "translate:\n  enabled: true\n  columns: [label]\n  source_language: de\n"
    config = load_entity(write_entity(include, "xx", text), sql_dir=include / "sql", env={})
    assert config.stages == ["cleanup", "extract", "load_staging", "translate", "dedupe", "load_target"]


def test_invalid_yaml_names_file_and_line(include: Path) -> None:
    (problem,) = _problems(include, "xx", "entity: xx\nschedule: [unclosed\n")
    assert problem.startswith(str(include / "entities" / "xx.yaml") + ": line ")
    assert "invalid YAML" in problem


def test_unknown_key_gets_did_you_mean(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("catchup", "x") + "catchpu: true\n"
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith(": catchpu: unknown key 'catchpu'; did you mean 'catchup'?")


def test_unknown_nested_key_gets_did_you_mean(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("  keep: newest", "  keep: newest\n  oder_by: x")
    (problem,) = _problems(include, "xx", text)
    assert ": dedupe.oder_by: unknown key 'oder_by'; did you mean 'order_by'?" in problem


def test_missing_sql_file(include: Path) -> None:
    path = write_entity(include, "xx", sql=None)
    with pytest.raises(EntityConfigError) as info:
        load_entity(path, sql_dir=include / "sql", env={})
    (problem,) = info.value.problems
    assert problem.field == "source.extract_sql"
    assert "SQL file not found" in problem.message and "xx/extract.sql" in problem.message


def test_sql_path_may_not_escape_include_sql(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("xx/extract.sql", "../../etc/passwd.sql")
    (problem,) = _problems(include, "xx", text)
    assert "source.extract_sql: must stay inside include/sql/" in problem


def test_bad_cron_expression(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace('"@daily"', '"61 * * * *"')
    (problem,) = _problems(include, "xx", text)
    assert ": schedule: '61 * * * *' is not a valid 5-field cron expression" in problem


def test_unknown_schedule_preset(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace('"@daily"', '"@fortnightly"')
    (problem,) = _problems(include, "xx", text)
    assert ": schedule: unknown preset '@fortnightly'" in problem


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("table: t_xx", "table: t_xx; DROP TABLE users", "target.table"),
        ("{name: label, type: text}", "{name: 'label`', type: text}", "columns[1].name"),
        ("table: stg_xx", "table: 1stg", "staging.table"),
        ("{name: id, type: string(20)}", "{name: id, type: string(20), target: 'i d'}", "columns[0].target"),
    ],
)
def test_bad_identifier(include: Path, old: str, new: str, field: str) -> None:
    (problem,) = _problems(include, "xx", MINIMAL.format(name="xx").replace(old, new))
    assert f": {field}: " in problem and "not a safe SQL" in problem


def test_unset_variable_fails(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("conn_id: tgt", "conn_id: ${TARGET_CONN}")
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith(": target.conn_id: environment variable ${TARGET_CONN} is not set")


def test_variable_interpolation_and_escape(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("conn_id: tgt", "conn_id: ${TARGET_CONN}")
    text = text.replace("entity: xx\n", 'entity: xx\ndescription: "costs $${PRICE}"\n')
    path = write_entity(include, "xx", text)
    config = load_entity(path, sql_dir=include / "sql", env={"TARGET_CONN": "rds_main"})
    assert config.target.conn_id == "rds_main"
    assert config.description == "costs ${PRICE}"


def test_missing_required_field(include: Path) -> None:
    text = "\n".join(line for line in MINIMAL.format(name="xx").splitlines() if not line.startswith("start_date"))
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith(": start_date: required field is missing")


def test_entity_must_match_file_name(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("entity: xx", "entity: yy")
    problems = _problems(include, "xx", text)
    assert any(": entity: 'yy' must match the file name 'xx'" in p for p in problems)


def test_newest_needs_order_by(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("  order_by: changed_at\n", "")
    (problem,) = _problems(include, "xx", text)
    assert ": dedupe.order_by: keep: newest needs order_by" in problem


def test_dedupe_key_must_be_a_column(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("key: [id]", "key: [idd]")
    (problem,) = _problems(include, "xx", text)
    assert ": dedupe.key[0]: 'idd' is not among columns ['id', 'label', 'amount', 'changed_at']" in problem


def test_translate_enabled_needs_columns(include: Path) -> None:
    text = MINIMAL.format(name="xx") + "translate:\n  enabled: true\n"
    (problem,) = _problems(include, "xx", text)
    assert ": translate.columns: translate.enabled is true but no columns are listed" in problem


def test_bad_column_type_and_fargate_vcpu_reported_together(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("type: text", "type: varchar2") + "compute:\n  vcpu: 3\n"
    problems = _problems(include, "xx", text)
    assert len(problems) == 2
    assert any(": columns[1].type: unknown column type 'varchar2'" in p for p in problems)
    assert any(": compute.vcpu: 3.0 is not a Fargate vCPU size" in p for p in problems)


def test_one_bad_file_does_not_hide_the_others(include: Path) -> None:
    write_entity(include, "good")
    write_entity(include, "bad", "entity: bad\nschedule: '@daily'\n")
    result = load_entities(include / "entities", include / "sql", env={})
    assert list(result.entities) == ["good"]
    assert result.problems and all(p.file.endswith("bad.yaml") for p in result.problems)


def test_disabled_entity_is_loaded_but_not_enabled(include: Path) -> None:
    write_entity(include, "off", MINIMAL.format(name="off") + "enabled: false\n")
    result = load_entities(include / "entities", include / "sql", env={})
    assert "off" in result.entities and "off" not in result.enabled


def test_defaults_file_merges_under_entities(include: Path) -> None:
    (include / "entities" / "_defaults.yaml").write_text("owner: team-x\ncompute:\n  memory_mib: 8192\n")
    write_entity(include, "xx", MINIMAL.format(name="xx") + "compute:\n  vcpu: 2\n")
    config = load_entities(include / "entities", include / "sql", env={}).entities["xx"]
    assert (config.owner, config.compute.vcpu, config.compute.memory_mib) == ("team-x", 2, 8192)


def test_etlctl_validate_prints_every_problem_and_fails(include: Path) -> None:
    write_entity(include, "good")
    write_entity(include, "bad", MINIMAL.format(name="bad").replace('"@daily"', '"99 * * * *"') + "retires: 3\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "entity_etl.cli",
            "validate",
            "--entities-dir",
            str(include / "entities"),
            "--sql-dir",
            str(include / "sql"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "bad.yaml" in line]
    assert len(lines) == 2
    assert any(
        line.endswith("bad.yaml: schedule: '99 * * * *' is not a valid 5-field cron expression") for line in lines
    )
    assert any(line.endswith("bad.yaml: retires: unknown key 'retires'; did you mean 'retries'?") for line in lines)
    assert "ok: good" in proc.stdout


def test_etlctl_validate_passes_on_the_repo() -> None:
    proc = subprocess.run([sys.executable, "-m", "entity_etl.cli", "validate"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert {"ok: de", "ok: jp", "ok: br"} <= {line.split(" (")[0] for line in proc.stdout.splitlines()}


def test_exported_json_schema_is_current() -> None:
    on_disk = json.loads((ROOT / "include" / "entities" / "entity.schema.json").read_text())
    current = {**EntityConfig.model_json_schema(), "$schema": on_disk["$schema"], "title": on_disk["title"]}
    assert on_disk == current, "run `make schema`"  # $defs too: the nested models' constraints
    assert on_disk["additionalProperties"] is False


@pytest.mark.parametrize("name", ["no", "on", "yes"])
def test_country_codes_that_yaml_1_1_reads_as_booleans(include: Path, name: str) -> None:
    # Norway's "no" must stay a string; `enabled: no` is then a string too, which a boolean refuses.
    write_entity(include, name, MINIMAL.format(name=name) + "enabled: false\n")
    config = load_entities(include / "entities", include / "sql", env={}).entities[name]
    assert config.entity == name
    assert config.enabled is False
    (problem,) = _problems(include, name, MINIMAL.format(name=name) + "enabled: no\n")
    assert problem.endswith(f"{name}.yaml: enabled: Input should be a valid boolean")


def test_run_stage_on_an_invalid_entity_names_file_and_field(include: Path, tmp_path: Path) -> None:
    write_entity(include, "xx", MINIMAL.format(name="xx").replace("table: t_xx", "table: t-xx"))
    proc = etlctl_run_stage("xx", "extract", tmp_path / "store", env={**os.environ, "ETL_INCLUDE_DIR": str(include)})
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("etlctl: error: ") and line.endswith(
        "xx.yaml: target.table: 't-xx' is not a safe SQL table name: use letters, digits and '_' "
        "(optionally 'schema.table'), start with a letter or '_', at most 64 characters per part"
    )
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("notify", "field", "message"),
    [
        ("notify: {on_sucess: true}\n", "notify.on_sucess", "did you mean 'on_success'"),
        ("notify: {max_run_minutes: 0}\n", "notify.max_run_minutes", "greater than 0"),
        ("notify: {topic_arn: 'arn:aws:sqs:eu-west-1:123456789012:q'}\n", "notify.topic_arn", "should match"),
    ],
)
def test_bad_notify_settings(include: Path, notify: str, field: str, message: str) -> None:
    (problem,) = _problems(include, "xx", MINIMAL.format(name="xx") + notify)
    assert f": {field}: " in problem and message in problem


# -- load_entities() validates a file once per process, while nothing its result depends on changes ------
def test_a_rewritten_file_is_validated_again_even_with_the_same_size_and_mtime(include: Path) -> None:
    path = write_entity(include, "xx")
    stat = path.stat()
    assert load_entities(include / "entities", include / "sql", env={}).entities["xx"].staging.table == "stg_xx"
    path.write_text(path.read_text().replace("stg_xx", "stg_yy"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert load_entities(include / "entities", include / "sql", env={}).entities["xx"].staging.table == "stg_yy"


def test_a_validated_file_follows_the_variables_it_references(include: Path) -> None:
    write_entity(include, "xx", MINIMAL.format(name="xx").replace("conn_id: tgt", "conn_id: ${TARGET_CONN}"))

    def load(env: dict[str, str]) -> Any:
        return load_entities(include / "entities", include / "sql", env=env)

    assert load({"TARGET_CONN": "rds_a"}).entities["xx"].target.conn_id == "rds_a"
    assert load({"TARGET_CONN": "rds_a", "UNRELATED": "1"}).entities["xx"].target.conn_id == "rds_a"
    assert load({"TARGET_CONN": "rds_b"}).entities["xx"].target.conn_id == "rds_b"
    (problem,) = load({}).problems
    assert str(problem).endswith(": target.conn_id: environment variable ${TARGET_CONN} is not set")


def test_a_validated_file_follows_the_defaults_and_its_sql_file(include: Path) -> None:
    write_entity(include, "xx")
    assert load_entities(include / "entities", include / "sql", env={}).entities["xx"].owner == "data-platform"
    (include / "entities" / "_defaults.yaml").write_text("owner: team-x\n")
    assert load_entities(include / "entities", include / "sql", env={}).entities["xx"].owner == "team-x"
    (include / "sql" / "xx" / "extract.sql").unlink()
    (problem,) = load_entities(include / "entities", include / "sql", env={}).problems
    assert problem.field == "source.extract_sql" and "SQL file not found" in problem.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("entity: xx\nkey: &x [1]\nother: *y\n", "invalid YAML: found undefined alias 'y'"),
        ("entity: xx\ncolumns:\n\t- a\n", "invalid YAML: found character '\\t' that cannot start any token"),
    ],
)
def test_yaml_errors_keep_pyyamls_wording(include: Path, text: str, message: str) -> None:
    """libyaml parses; PyYAML words the errors (libyaml leaves out the alias name and the character)."""
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith(message), problem


# -- key columns, duplicate names and list paths ------------------------------------------------------
@pytest.mark.parametrize(
    ("sanitize", "message"),
    [
        (
            "[trim]",
            "'id' is a dedupe.key column and takes no sanitizers ['trim']: dedupe compares the staged values, "
            "the target the sanitized ones, so they would disagree on what one key is (clean the key in the "
            "extract query)",
        ),
        (
            "[trim, null_if_empty]",
            "'id' is a dedupe.key column: null_if_empty would turn an empty key into NULL, which is no key at "
            "all; key columns take no sanitizers (clean the key in the extract query)",
        ),
    ],
)
def test_key_columns_take_no_sanitizers(include: Path, sanitize: str, message: str) -> None:
    text = MINIMAL.format(name="xx").replace("{name: id, type: string(20)}", f"{{name: id, sanitize: {sanitize}}}")
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith(f"xx.yaml: columns[0].sanitize: {message}")


def test_a_sanitizer_on_a_column_that_is_not_a_key_is_fine(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("{name: label, type: text}", "{name: label, sanitize: [trim, upper]}")
    assert load_entity(write_entity(include, "xx", text), sql_dir=include / "sql", env={}).columns[1].sanitize == [
        "trim",
        "upper",
    ]


def test_column_names_are_unique_ignoring_case(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("{name: label, type: text}", "{name: ID, type: text}")
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith("xx.yaml: columns[1].name: duplicate column name 'ID' (also columns[0])")


def test_translate_column_path_names_the_item(include: Path) -> None:
    text = MINIMAL.format(name="xx") + "translate: {enabled: true, columns: [label, nope]}\n"
    (problem,) = _problems(include, "xx", text)
    assert ": translate.columns[1]: 'nope' is not among columns" in problem


def test_unset_variable_in_a_list_names_the_item(include: Path) -> None:
    text = MINIMAL.format(name="xx").replace("{name: label, type: text}", "{name: '${LABEL}', type: text}")
    (problem,) = _problems(include, "xx", text)
    assert problem.endswith("xx.yaml: columns[1].name: environment variable ${LABEL} is not set")
