"""``orchestration/notify/notifier.py``: ``SnsEventNotifier`` without a topic or with a failing publish, its
kinds, the entity ``notify:`` wiring, and its callbacks fired in a real ``airflow dags test`` run."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog

from entity_etl.config.loader import find_entity
from entity_etl.orchestration.factory import build_entity_dag
from entity_etl.orchestration.notifier import (
    SnsEventNotifier,
)
from support.notify_events import BASE_URL, REGION, RUN_ID, TaskInstance, context, drain, sns_tap
from support.servers import MotoServer

pytestmark = pytest.mark.moto


def test_without_a_topic_the_event_is_logged_and_a_failing_publish_never_fails_the_callback(
    aws: MotoServer, airflow_env: None, de_dag: Any
) -> None:
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=1, max_tries=0)
    with structlog.testing.capture_logs() as logs:
        SnsEventNotifier("task_failed")(context(de_dag, ti, exception=ValueError("bad row")))
    (line,) = [entry for entry in logs if "no SNS topic" in entry["event"]]
    assert line["log_level"] == "warning"
    logged = json.loads(line["event"][line["event"].index("{") :])
    assert (logged["kind"], logged["entity"], logged["task_id"]) == ("task_failed", "de", "extract")
    assert logged["error"] == {"type": "ValueError", "message": "bad row"}

    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    with structlog.testing.capture_logs() as logs:
        SnsEventNotifier("task_failed", topic_arn=missing)(context(de_dag, ti, exception=ValueError("bad row")))
    (line,) = [entry for entry in logs if entry["log_level"] == "error"]
    assert "could not publish the task_failed notification" in line["event"] and "NotFound" in line["event"]


def test_unknown_kind_is_refused_when_the_dag_is_built() -> None:
    with pytest.raises(ValueError, match="unknown notification kind 'task_exploded'"):
        SnsEventNotifier("task_exploded")


def test_entity_notify_config_wires_the_callbacks() -> None:
    """de.yaml asks for success summaries, jp.yaml has the defaults; a copy of de adds a deadline."""
    de_config = find_entity("de")
    de = build_entity_dag(
        de_config.model_copy(update={"notify": de_config.notify.model_copy(update={"max_run_minutes": 120})})
    )
    assert not build_entity_dag(de_config).deadline
    for task in de.tasks:
        (on_failure,) = task.on_failure_callback
        assert isinstance(on_failure, SnsEventNotifier)
        assert (on_failure.kind, on_failure.entity, on_failure.topic_arn) == ("task_failed", "de", None)
    assert (de.on_failure_callback.kind, de.on_failure_callback.entity) == ("dag_run_failed", "de")
    assert (de.on_success_callback.kind, de.on_success_callback.entity) == ("run_succeeded", "de")
    (alert,) = de.deadline
    assert alert.interval == dt.timedelta(minutes=120)
    assert alert.callback.kwargs == {"kind": "run_too_long", "max_duration_s": 7200.0, "entity": "de"}

    jp = build_entity_dag(find_entity("jp"))
    assert jp.on_failure_callback.kind == "dag_run_failed"
    assert jp.on_success_callback is None
    assert not jp.deadline

    topic = f"arn:aws:sns:{REGION}:123456789012:etl-jp"
    quiet = find_entity("jp").model_copy(
        update={"notify": find_entity("jp").notify.model_copy(update={"on_failure": False, "topic_arn": topic})}
    )
    silent = build_entity_dag(quiet)
    assert silent.on_failure_callback is None
    assert all(not task.on_failure_callback for task in silent.tasks)

    loud = find_entity("jp").model_copy(
        update={"notify": find_entity("jp").notify.model_copy(update={"on_success": True, "topic_arn": topic})}
    )
    assert build_entity_dag(loud).on_success_callback.topic_arn == topic


E2E_DAG = """
import datetime as dt

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from entity_etl.orchestration.notifier import SnsEventNotifier


def boom():
    raise ValueError("source unreachable: mysql://etl:hunter2@db.internal/source")


with DAG(
    "etl_zz",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    tags=["entity-etl", "entity:zz"],
    default_args={"retries": 0, "on_failure_callback": SnsEventNotifier("task_failed", entity="zz")},
    on_failure_callback=SnsEventNotifier("dag_run_failed", entity="zz"),
):
    PythonOperator(task_id="extract", python_callable=boom)
"""


@pytest.mark.slow
def test_callbacks_fire_in_a_real_airflow_run(aws: MotoServer, tmp_path: Path) -> None:
    """``airflow dags test``: Airflow's task runner and DAG-run callbacks hand the notifier their contexts."""
    import os

    topic, queue = sns_tap()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "etl_zz.py").write_text(E2E_DAG)
    env = {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__API__BASE_URL": BASE_URL,
        "ETL_NOTIFY_TOPIC_ARN": topic,
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "etl_zz", "2026-03-08T00:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "source unreachable" in run.stdout + run.stderr, run.stdout[-3000:] + run.stderr[-3000:]

    events = {m["body"]["kind"]: m["body"] for m in drain(queue, expect=2)}
    assert set(events) == {"task_failed", "dag_run_failed"}
    task, dag_run = events["task_failed"], events["dag_run_failed"]
    run_id = task["run_id"]
    assert run_id.startswith("manual__")
    assert (task["entity"], task["dag_id"], task["task_id"], task["stage"]) == ("zz", "etl_zz", "extract", "extract")
    assert (task["try_number"], task["max_tries"]) == (1, 0)
    assert task["error"] == {"type": "ValueError", "message": "source unreachable: mysql://***:***@db.internal/source"}
    assert task["logical_date"].startswith("2026-03-08T00:00:00")
    assert task["airflow_url"] == f"{BASE_URL}/dags/etl_zz/runs/{quote(run_id)}/tasks/extract?try_number=1"
    assert task["airflow_run_url"] == f"{BASE_URL}/dags/etl_zz/runs/{quote(run_id, safe='')}"
    assert task["batch"] is None
    assert (dag_run["run_id"], dag_run["task_id"], dag_run["reason"]) == (run_id, "extract", "task_failure")
