"""A staging table is never a target table or another entity's staging table, in any spelling.

``cleanup`` drops and recreates the staging table, so each of these would destroy a table: the loader
(``etlctl validate``, both DAG files) refuses them with one line naming the files and fields.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from entity_etl.config.identifiers import normalised_table, same_table
from entity_etl.config.loader import EntityConfigError, load_entities, load_entity
from entity_etl.config.table_identity import check_table_identity
from support.entity_files import MINIMAL, make_include, write_entity


@pytest.fixture
def include(tmp_path: Path) -> Path:
    return make_include(tmp_path)


def _entity(include: Path, name: str, staging: str, target: str, conn_id: str = "tgt") -> Path:
    text = MINIMAL.format(name=name).replace(f"table: stg_{name}", f"table: {staging}")
    text = text.replace(f"table: t_{name}", f"table: {target}").replace("conn_id: tgt", f"conn_id: {conn_id}")
    return write_entity(include, name, text)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Company_DE", (None, "company_de")),
        ("main.company_de", ("main", "company_de")),
        ("`Main`.`Company_DE`", ("main", "company_de")),
        ('"etl"."Company_DE"', ("etl", "company_de")),
        ('"a.b".t', ("a.b", "t")),
        ("`we``ird`", (None, "we`ird")),
        ("  spaced  ", (None, "spaced")),
    ],
)
def test_normalised_table(name: str, expected: tuple[str | None, str]) -> None:
    assert normalised_table(name) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("company_de", "COMPANY_DE", True),
        ("main.company_de", "company_de", True),  # SQLite's default schema
        ("etl.company_de", "Company_DE", True),  # a MySQL database prefix
        ("`etl`.company_de", "ETL.company_de", True),
        ("a.company_de", "b.company_de", False),
        ("company_de", "company_de2", False),
        ("company.de", "company_de", False),
    ],
)
def test_same_table(a: str, b: str, same: bool) -> None:
    assert same_table(a, b) is same
    assert same_table(b, a) is same


@pytest.mark.parametrize(
    ("staging", "target"),
    [("T_XX", "t_xx"), ("main.t_xx", "t_xx"), ("stg", "etl.STG"), ("etl.t_xx", "ETL.T_xx")],
)
def test_a_staging_table_that_is_its_own_target(include: Path, staging: str, target: str) -> None:
    path = _entity(include, "xx", staging, target)
    with pytest.raises(EntityConfigError) as info:
        load_entity(path, sql_dir=include / "sql", env={})
    (problem,) = info.value.problems
    assert str(problem) == (
        f"{path}: staging.table: {staging!r} is the target.table {target!r} (names compare ignoring case, "
        "quotes and a schema prefix): cleanup drops the staging table"
    )


def test_different_schemas_are_different_tables(include: Path) -> None:
    path = _entity(include, "xx", "work.t_xx", "live.t_xx")
    assert load_entity(path, sql_dir=include / "sql", env={}).staging.table == "work.t_xx"


def test_a_staging_table_that_is_another_files_target(include: Path) -> None:
    at = _entity(include, "at", "stg_company_at", "company_de")
    de = _entity(include, "de", "Company_DE", "company_de_live")
    _entity(include, "jp", "stg_jp", "t_jp")
    result = load_entities(include / "entities", include / "sql", env={})
    assert [str(p) for p in result.problems] == [f"{de}: staging.table: 'Company_DE' is also the target.table of {at}"]
    assert list(result.entities) == ["jp"]  # both files refused, the others unaffected


def test_a_staging_table_shared_by_two_files(include: Path) -> None:
    a = _entity(include, "aa", "stg_shared", "t_aa")
    b = _entity(include, "bb", "main.STG_SHARED", "t_bb")
    result = load_entities(include / "entities", include / "sql", env={})
    assert [str(p) for p in result.problems] == [f"{a}: staging.table: 'stg_shared' is also the staging.table of {b}"]
    assert result.entities == {}


def test_tables_on_different_target_connections_are_not_compared(include: Path) -> None:
    _entity(include, "aa", "stg_shared", "t_aa", conn_id="tgt_eu")
    _entity(include, "bb", "stg_shared", "t_bb", conn_id="tgt_us")
    result = load_entities(include / "entities", include / "sql", env={})
    assert result.problems == [] and sorted(result.entities) == ["aa", "bb"]


def test_check_table_identity_is_a_pure_function(include: Path) -> None:
    configs = [
        (str(path), load_entity(path, sql_dir=include / "sql", env={}))
        for path in (_entity(include, "aa", "stg_aa", "t_aa"), _entity(include, "bb", "T_AA", "t_bb"))
    ]
    (problem,) = check_table_identity(configs)
    assert (problem.file, problem.field) == (configs[1][0], "staging.table")
    assert problem.message == f"'T_AA' is also the target.table of {configs[0][0]}"
    assert check_table_identity(configs[:1]) == []


def test_etlctl_validate_refuses_with_one_line_per_clash(include: Path) -> None:
    at = _entity(include, "at", "stg_at", "company_de")
    de = _entity(include, "de", "company_de", "company_de_live")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "entity_etl.cli", "validate"),
            *("--entities-dir", str(include / "entities"), "--sql-dir", str(include / "sql")),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{de}: staging.table: 'company_de' is also the target.table of {at}",
        "1 problem(s) found",
    ]
    assert "ok: " not in proc.stdout


def test_the_dag_files_import_error_names_the_clash(include: Path) -> None:
    from entity_etl.orchestration.factory import EntityConfigImportError, raise_config_errors, register_entity_dags

    at = _entity(include, "at", "stg_at", "company_de")
    de = _entity(include, "de", "COMPANY_DE", "company_de_live")
    with pytest.raises(EntityConfigImportError) as info:
        raise_config_errors(include / "entities", include / "sql")
    assert str(info.value).splitlines()[1:] == [f"{de}: staging.table: 'COMPANY_DE' is also the target.table of {at}"]
    dags: dict[str, Any] = {}
    # Both files are refused: each keeps its DAG, which fails every run naming the clash (see test_broken_entity_dag).
    assert sorted(register_entity_dags(dags, include / "entities", include / "sql")) == ["etl_at", "etl_de"]
    assert all(dag.task_ids == ["config_error"] and "is also the target.table" in dag.doc_md for dag in dags.values())
