"""A refused entity file keeps its DAG: listed, scheduled, documented, and failing every run at once.

Only ``enabled: false`` or removing the file takes an entity's DAG away (issue 12: a ``schedul:`` typo
used to make ``etl_jp`` vanish and its schedule stop silently).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.entity_files import ROOT, make_include, write_entity

DAGS = ROOT / "dags"
TYPO = "/include/entities/jp.yaml: schedul: unknown key 'schedul'; did you mean 'schedule'?"
MISSING = "/include/entities/jp.yaml: schedule: required field is missing"


def dagbag(monkeypatch: pytest.MonkeyPatch, include: Path):  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    return DagBag(dag_folder=str(DAGS), safe_mode=True)


def edit(include: Path, name: str, old: str, new: str) -> None:
    path = include / "entities" / name
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def typo_include(tmp_path: Path) -> Path:
    """The repo's include/ with ``schedule:`` misspelled ``schedul:`` in jp.yaml."""
    include = make_include(tmp_path, copy_repo=True)
    edit(include, "jp.yaml", "\nschedule: ", "\nschedul: ")
    return include


def config_import_error(bag) -> str:  # type: ignore[no-untyped-def]
    ((path, error),) = bag.import_errors.items()
    assert path.endswith("etl_config_errors.py")
    return str(error)


def test_a_typo_keeps_the_dag_with_its_schedule_tags_and_error(monkeypatch: pytest.MonkeyPatch, typo_include: Path):
    from airflow.sdk import CronDataIntervalTimetable

    bag = dagbag(monkeypatch, typo_include)
    assert {"etl_jp", "etl_de", "etl_br"} <= set(bag.dag_ids)
    dag = bag.dags["etl_jp"]
    assert set(dag.tags) == {"entity-etl", "entity:jp", "config-error", "asia"}
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 0 * * 0"  # jp.yaml's weekly schedule, from the misspelled key
    assert dag.start_date.date().isoformat() == "2026-10-04"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.task_ids == ["config_error"]
    assert dag.task_dict["config_error"].retries == 0
    assert dag.task_dict["config_error"].owner == "data-platform"  # from _defaults.yaml
    doc = dag.doc_md or ""
    assert TYPO in doc and MISSING in doc
    assert "read from the misspelled key `schedul`" in doc
    assert "`enabled: false`" in doc
    # The import error still names the file, field and message.
    error = config_import_error(bag)
    assert TYPO in error and MISSING in error
    # The other entities are untouched.
    assert "config-error" not in bag.dags["etl_de"].tags
    assert "extract" in bag.dags["etl_de"].task_ids


def test_the_failure_callbacks_are_the_entitys_notify_wiring(monkeypatch: pytest.MonkeyPatch, typo_include: Path):
    from entity_etl.orchestration.notifier import SnsEventNotifier

    topic = "arn:aws:sns:eu-west-1:123456789012:jp-alerts"
    edit(typo_include, "jp.yaml", "\ntags: ", f"\nnotify: {{on_success: true, topic_arn: '{topic}'}}\ntags: ")
    dag = dagbag(monkeypatch, typo_include).dags["etl_jp"]
    (task_cb,) = dag.task_dict["config_error"].on_failure_callback  # a task keeps a list of callbacks
    dag_cb = dag.on_failure_callback
    assert isinstance(task_cb, SnsEventNotifier) and isinstance(dag_cb, SnsEventNotifier)
    assert (task_cb.kind, task_cb.entity, task_cb.topic_arn) == ("task_failed", "jp", topic)
    assert (dag_cb.kind, dag_cb.entity, dag_cb.topic_arn) == ("dag_run_failed", "jp", topic)
    assert not dag.on_success_callback, "a run that can only fail sends no success summary"


def test_notify_off_means_no_failure_callbacks(monkeypatch: pytest.MonkeyPatch, typo_include: Path) -> None:
    edit(typo_include, "jp.yaml", "\ntags: ", "\nnotify: {on_failure: false}\ntags: ")
    dag = dagbag(monkeypatch, typo_include).dags["etl_jp"]
    assert not dag.on_failure_callback and not dag.task_dict["config_error"].on_failure_callback


def test_enabled_false_is_the_explicit_way_to_drop_a_broken_dag(monkeypatch: pytest.MonkeyPatch, typo_include: Path):
    edit(typo_include, "jp.yaml", "\ntags: ", "\nenabled: false\ntags: ")
    bag = dagbag(monkeypatch, typo_include)
    assert "etl_jp" not in bag.dag_ids
    assert TYPO in config_import_error(bag)


def test_removing_the_file_drops_the_dag(monkeypatch: pytest.MonkeyPatch, typo_include: Path) -> None:
    (typo_include / "entities" / "jp.yaml").unlink()
    bag = dagbag(monkeypatch, typo_include)
    assert "etl_jp" not in bag.dag_ids and {"etl_de", "etl_br"} <= set(bag.dag_ids)
    assert bag.import_errors == {}


def test_an_unreadable_schedule_leaves_the_dag_unscheduled_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    include = make_include(tmp_path, copy_repo=True)
    edit(include, "jp.yaml", '"0 0 * * 0"', '"0 0 * * 8"')
    bag = dagbag(monkeypatch, include)
    dag = bag.dags["etl_jp"]
    assert type(dag.timetable).__name__ == "NullTimetable" and dag.timetable.can_be_scheduled is False
    assert "schedule '0 0 * * 8' is invalid, so this DAG has none (manual runs only)" in (dag.doc_md or "")
    assert "jp.yaml: schedule: '0 0 * * 8' is not a valid 5-field cron expression" in (dag.doc_md or "")
    assert "'0 0 * * 8' is not a valid 5-field cron expression" in config_import_error(bag)


def test_invalid_yaml_still_keeps_a_dag_named_after_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    include = make_include(tmp_path, copy_repo=True)
    (include / "entities" / "jp.yaml").write_text("entity: jp\nschedule: [unclosed\n", encoding="utf-8")
    bag = dagbag(monkeypatch, include)
    dag = bag.dags["etl_jp"]
    assert set(dag.tags) == {"entity-etl", "entity:jp", "config-error"}
    assert "jp.yaml: line 3, column 1: invalid YAML" in (dag.doc_md or "")
    assert "no schedule could be read from the file" in (dag.doc_md or "")


def test_values_airflow_would_refuse_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch, typo_include: Path):
    """A broken file's tag too long for Airflow, or a bad time zone, must not fail the DAG file for everyone."""
    edit(typo_include, "jp.yaml", "tags: [asia]", f"tags: [asia, {'x' * 101}]\ntimezone: Mars/Olympus")
    bag = dagbag(monkeypatch, typo_include)
    dag = bag.dags["etl_jp"]
    assert set(dag.tags) == {"entity-etl", "entity:jp", "config-error"}
    assert str(dag.timetable.timezone) == "UTC" and dag.timetable.expression == "0 0 * * 0"
    assert {"etl_de", "etl_br"} <= set(bag.dag_ids)


def test_a_file_name_that_is_no_entity_id_gets_no_dag_but_its_import_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    include = make_include(tmp_path, copy_repo=True)
    write_entity(include, "Not-An-Id", "schedule: '@daily'\n")
    bag = dagbag(monkeypatch, include)
    assert {"etl_jp", "etl_de", "etl_br"} <= set(bag.dag_ids)
    assert not [d for d in bag.dag_ids if "config-error" in bag.dags[d].tags]
    assert "Not-An-Id.yaml: entity:" in config_import_error(bag)


def test_a_shared_staging_table_keeps_both_dags_naming_the_clash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    include = make_include(tmp_path, copy_repo=True)
    edit(include, "br.yaml", "table: stg_company_br", "table: stg_company_jp")
    bag = dagbag(monkeypatch, include)
    for dag_id in ("etl_jp", "etl_br"):
        dag = bag.dags[dag_id]
        assert dag.task_ids == ["config_error"], dag_id
        assert "br.yaml: staging.table: 'stg_company_jp' is also the" in (dag.doc_md or "")
    assert bag.dags["etl_de"].task_ids != ["config_error"]


def test_a_broken_defaults_file_keeps_every_entity_dag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    include = make_include(tmp_path, copy_repo=True)
    (include / "entities" / "_defaults.yaml").write_text("- not a mapping\n", encoding="utf-8")
    bag = dagbag(monkeypatch, include)
    for dag_id in ("etl_jp", "etl_de", "etl_br"):
        assert bag.dags[dag_id].task_ids == ["config_error"], dag_id
        assert "_defaults.yaml: -: top level must be a mapping of keys" in (bag.dags[dag_id].doc_md or "")
    assert bag.dags["etl_jp"].timetable.expression == "0 0 * * 0"


def test_a_task_start_builds_the_broken_dag_alone(monkeypatch: pytest.MonkeyPatch, typo_include: Path) -> None:
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "etl_jp")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", "config_error")
    bag = dagbag(monkeypatch, typo_include)
    assert bag.dag_ids == ["etl_jp"]
    assert bag.dags["etl_jp"].task_ids == ["config_error"]
    assert bag.import_errors == {}


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A migrated Airflow metadata DB (SQLite) in the test session's AIRFLOW_HOME."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    yield home


def logged_notifications(output: str) -> list[dict[str, object]]:
    """The events the notifier logged (no SNS topic is configured): one JSON object per log line."""
    events = []
    for line in output.splitlines():
        _, marker, body = line.partition("to publish it): ")
        if marker:
            events.append(json.loads(body[: body.rindex("}") + 1]))
    return events


def test_a_run_fails_at_once_with_the_error_and_notifies(airflow_db: Path, typo_include: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ETL_INCLUDE_DIR": str(typo_include), "ETL_OBJECT_STORE_URL": str(tmp_path / "objects")}
    env.pop("ETL_NOTIFY_TOPIC_ARN", None)
    run = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "etl_jp", "2026-10-11T00:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "AirflowFailException: 2 problem(s) in the entity file" in output
    assert TYPO in output and MISSING in output
    events = logged_notifications(output)
    assert [e["kind"] for e in events] == ["task_failed", "dag_run_failed"], output[-3000:]
    task_failed = events[0]
    assert task_failed["entity"] == "jp" and task_failed["task_id"] == "config_error"
    assert task_failed["try_number"] == 1 and task_failed["max_tries"] == 0, "no retries: it fails at once"
    error = task_failed["error"]
    assert isinstance(error, dict) and TYPO in str(error["message"])
