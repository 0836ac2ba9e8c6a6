"""DAG integrity, in the spirit of the Astro project template's tests, plus the factory's own rules."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from entity_etl.config.loader import load_entities
from support.entity_files import ROOT, make_include, write_entity

DAGS = ROOT / "dags"


def dagbag(monkeypatch: pytest.MonkeyPatch | None = None, include: Path | None = None):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    if monkeypatch is not None and include is not None:
        monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    return DagBag(dag_folder=str(DAGS), safe_mode=True)


@pytest.fixture(scope="module")
def bag():  # type: ignore[no-untyped-def]
    return dagbag()


def chain(dag) -> list[str]:  # type: ignore[no-untyped-def]
    """The work tasks in order: setup, stages, publish, teardown (the setup's edge to its teardown aside)."""
    roots = [t for t in dag.tasks if not t.upstream_task_ids]
    assert [t.task_id for t in roots] == ["acquire_lease"] and roots[0].is_setup
    order, task = [], roots[0]
    while True:
        order.append(task.task_id)
        downstream = [t for t in task.downstream_list if not (task.is_setup and t.is_teardown)]
        assert len(downstream) <= 1, f"{task.task_id} fans out"
        if not downstream:
            return order
        task = downstream[0]


def stages_of(dag) -> list[str]:  # type: ignore[no-untyped-def]
    order = chain(dag)
    assert order[0] == "acquire_lease" and order[-2:] == ["publish_loaded", "release_lease"]
    assert dag.task_dict["release_lease"].is_teardown
    return order[1:-2]


def expected_dag_ids() -> list[str]:
    """The DAGs dags/ must hold, known without Airflow: one per enabled entity, and the NPS DAG (tests/test_nps.py)."""
    return sorted({f"etl_{e}" for e in load_entities().enabled} | {"survey_nps_daily"})


DAG_IDS = expected_dag_ids()
ENTITY_DAG_IDS = [d for d in DAG_IDS if d.startswith("etl_")]
DAG_FILES = sorted(p.name for p in DAGS.glob("*.py"))


@pytest.mark.parametrize("filename", DAG_FILES)
def test_file_imports(bag, filename: str) -> None:  # type: ignore[no-untyped-def]
    """Each file of dags/ parses without an import error (the Astro template's test_file_imports)."""
    assert {Path(p).name: e for p, e in bag.import_errors.items() if Path(p).name == filename} == {}


def test_one_dag_per_enabled_entity(bag) -> None:  # type: ignore[no-untyped-def]
    assert set(bag.dag_ids) == set(DAG_IDS)
    assert len(ENTITY_DAG_IDS) >= 3


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_integrity(bag, dag_id: str) -> None:  # type: ignore[no-untyped-def]
    """Every DAG, one case each: it is there, tagged, owned, documented, one run at a time, and each run owns
    its data interval."""
    from airflow.sdk import CronDataIntervalTimetable

    assert dag_id in bag.dags, f"{dag_id} is missing from dags/ (import errors: {sorted(bag.import_errors)})"
    dag = bag.dags[dag_id]
    assert dag.tags, f"{dag_id} has no tags"
    assert dag.max_active_runs == 1
    assert isinstance(dag.timetable, CronDataIntervalTimetable), "a run must own its data interval"
    assert (dag.doc_md or "").strip(), f"{dag_id} has no doc_md"
    assert all(t.owner and t.owner != "airflow" for t in dag.tasks), "every task names its owning team"


@pytest.mark.parametrize("dag_id", ENTITY_DAG_IDS)
def test_dag_rules(bag, dag_id: str) -> None:  # type: ignore[no-untyped-def]
    """Each entity DAG is its entity file: catch-up, stages, schedule, tags, owner, retries and alerts."""
    dag = bag.dags[dag_id]
    config = load_entities().enabled[dag_id.removeprefix("etl_")]
    assert dag.catchup == config.catchup
    assert stages_of(dag) == config.stages
    assert ("translate" in dag.task_ids) == config.translate.enabled
    assert dag.timetable.expression == config.cron
    assert f"entity:{config.entity}" in dag.tags
    for task in dag.tasks:
        assert task.owner == config.owner
        assert task.retries == config.retries
    assert bool(dag.on_failure_callback) == config.notify.on_failure
    assert f"Entity `{config.entity}`" in (dag.doc_md or "")
    assert "columns:" not in (dag.doc_md or ""), "doc_md summarises, it does not dump the YAML"


def test_stage_order_and_translate_only_where_enabled(bag) -> None:  # type: ignore[no-untyped-def]
    assert stages_of(bag.dags["etl_de"]) == ["cleanup", "extract", "load_staging", "translate", "dedupe", "load_target"]
    assert stages_of(bag.dags["etl_jp"]) == ["cleanup", "extract", "load_staging", "dedupe", "load_target"]


def test_schedules_differ_per_entity(bag) -> None:  # type: ignore[no-untyped-def]
    crons = {d: bag.dags[d].timetable.expression for d in ("etl_de", "etl_jp", "etl_br")}
    assert crons == {"etl_de": "0 0 * * *", "etl_jp": "0 0 * * 0", "etl_br": "0 0 1 * *"}


def test_parsing_reads_only_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network and no database while the DAG files are parsed."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network or DB access at parse time: {args!r}")

    bag_cls = __import__("airflow.dag_processing.dagbag", fromlist=["DagBag"]).DagBag
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(sqlite3, "connect", refuse)
    bag = bag_cls(dag_folder=str(DAGS), safe_mode=True)
    assert bag.import_errors == {}
    assert len(bag.dag_ids) >= 3


def test_parsing_context_builds_only_the_dag_being_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    include = make_include(tmp_path, copy_repo=True)
    write_entity(include, "broken", "entity: broken\nschedule: '@daily'\n")  # invalid: must not matter
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "etl_jp")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "extract")
    bag = dagbag(monkeypatch, include)
    assert bag.dag_ids == ["etl_jp"]
    assert bag.import_errors == {}


def test_same_dag_shape_for_both_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = []
    for backend in ("local", "batch"):
        monkeypatch.setenv("ETL_COMPUTE_BACKEND", backend)
        bag = dagbag()
        shapes.append({d: [(t.task_id, type(t).__name__) for t in bag.dags[d].tasks] for d in bag.dag_ids})
    assert shapes[0] == shapes[1]


def test_invalid_entity_file_does_not_take_down_the_others(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    include = make_include(tmp_path, copy_repo=True)
    write_entity(
        include,
        "zz",
        (include / "entities" / "jp.yaml").read_text().replace("jp", "zz").replace("0 0 * * 0", "0 0 * * 8"),
    )
    bag = dagbag(monkeypatch, include)
    assert {"etl_de", "etl_jp", "etl_br"} <= set(bag.dag_ids)
    assert bag.dags["etl_zz"].task_ids == ["config_error"], "a refused file keeps a DAG that fails its runs"
    ((path, error),) = bag.import_errors.items()
    assert path.endswith("etl_config_errors.py")
    assert "zz.yaml: schedule: '0 0 * * 8' is not a valid 5-field cron expression" in error


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A migrated Airflow metadata DB (SQLite) in the test session's AIRFLOW_HOME."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    yield home


def test_config_error_is_shown_as_an_import_error_in_the_ui(
    airflow_db: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The UI lists import errors from the metadata DB: the entity's file and field must be there."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session
    from sqlalchemy import select

    include = make_include(tmp_path, copy_repo=True)
    (include / "entities" / "br.yaml").write_text(
        (include / "entities" / "br.yaml").read_text().replace("razao_social", "razao social", 1)
    )
    bag = dagbag(monkeypatch, include)
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        errors = session.scalars(select(ParseImportError)).all()
        stacks = {e.filename: e.stacktrace for e in errors}
    ((_filename, stack),) = ((f, s) for f, s in stacks.items() if f.endswith("etl_config_errors.py"))
    assert "br.yaml: columns[1].name: 'razao social' is not a safe SQL identifier" in stack
    assert {"etl_de", "etl_jp"} <= set(bag.dag_ids) and bag.dags["etl_br"].task_ids == ["config_error"]
    with create_session() as session:  # the broken DAG is serialized like any other
        assert session.get(DagModel, "etl_br") is not None


def readme_walkthrough() -> dict[str, str]:
    """The README's "Add a new country" files, word for word: file path -> the fenced block under it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Add a new country\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^\d+\. Write `([^`]+)`:\n   ```\w+\n(.*?)\n   ```$", section, flags=re.M | re.S)
    return {path: textwrap.dedent("   " + body).strip() + "\n" for path, body in blocks}


def test_new_entity_is_yaml_and_sql_only_and_runs(airflow_db: Path, tmp_path: Path) -> None:
    """Add a country with the README's YAML and SQL files, word for word; it validates, appears and runs."""
    files = readme_walkthrough()
    assert set(files) == {"include/sql/nz/extract.sql", "include/entities/nz.yaml"}
    include = make_include(tmp_path, copy_repo=True)
    for path, body in files.items():
        target = include / Path(path).relative_to("include")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    # Step 3: `etlctl validate` finds nothing wrong.
    validate = subprocess.run(
        [sys.executable, "-m", "entity_etl.cli", "validate"],
        env={**os.environ, "ETL_INCLUDE_DIR": str(include)},
        capture_output=True,
        text=True,
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "ok: nz (enabled, schedule @weekly" in validate.stdout
    # Step 3's connection, for the YAML's conn_id: Airflow's CLI, the environment, Secrets Manager.
    conn_id = load_entities(include / "entities", include / "sql").entities["nz"].source.conn_id
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Add a new country\n", 1)[1]
    step3 = section.split("\n3. ", 1)[1].split("\n4. ", 1)[0]
    assert f"airflow connections add {conn_id} --conn-uri '" in step3
    (variable,) = set(re.findall(r"export (AIRFLOW_CONN_\w+)=", step3))
    assert variable == f"AIRFLOW_CONN_{conn_id.upper()}"
    assert f"--name airflow/connections/{conn_id} " in step3
    uris = re.findall(r"'(\w+://[^']*)'", step3)
    assert len(uris) == 3 and set(uris) == {"mysql://USER:PASSWORD@HOST:3306/DATABASE"}, uris  # placeholders
    src, tgt = tmp_path / "nz.db", tmp_path / "target.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE companies (nzbn TEXT, entity_name TEXT, modified TEXT)")
        conn.executemany(
            "INSERT INTO companies VALUES (?, ?, ?)",
            [
                ("9429000000001", "Kiwi Ltd", "2026-03-02 10:00:00"),
                ("9429000000001", "Kiwi Limited", "2026-03-03 10:00:00"),
                ("9429000000002", "Māori Arts Trust", "2026-03-04 10:00:00"),
                ("9429000000003", "Too Late", "2026-03-08 00:00:00"),
            ],
        )
    env = {
        **os.environ,
        "ETL_INCLUDE_DIR": str(include),
        "ETL_OBJECT_STORE_URL": str(tmp_path / "objects"),
        "ETL_COMPUTE_BACKEND": "local",
        variable: json.dumps({"conn_type": "sqlite", "host": str(src)}),  # step 3's variable
        "AIRFLOW_CONN_ETL_TARGET": json.dumps({"conn_type": "sqlite", "host": str(tgt)}),
    }
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "list", "--local", "-o", "plain"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "etl_nz" in listed.stdout
    # @weekly: the manual run at 2026-03-08 owns [2026-03-01, 2026-03-08).
    run = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "etl_nz", "2026-03-08T00:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with sqlite3.connect(tgt) as conn:
        rows = conn.execute("SELECT nzbn, entity_name FROM company_nz ORDER BY nzbn").fetchall()
    assert rows == [("9429000000001", "Kiwi Limited"), ("9429000000002", "Māori Arts Trust")]
