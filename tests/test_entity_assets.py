"""Entity Assets through a real Airflow 3 (``deploy/local/airflow_local.py``: api-server, scheduler,
dag-processor, triggerer on SQLite).

``etl_de``'s ``publish_loaded`` declares the outlet ``Asset("x-entity-etl://de/company_de")``. A test DAG
scheduled on that Asset (``tests/asset_dags/de_loaded_consumer.py``) must be started by the scheduler from
the asset event of an ``etl_de`` run triggered over the REST API, and see that run's figures in the event's
``extra``; the "entity loaded" JSON event (the local outbox on the embedded default, SQS on AWS) stays.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo.sources import DEMO_INTERVALS
from deploy.local.airflow_local import LocalAirflow, local_airflow

from entity_etl.orchestration.entity_asset import entity_asset_uri
from support.airflow_runs import (
    dags_folder_with,
    quoted,
    task_log,
    task_states,
    trigger,
    unpause,
    wait_for,
    wait_for_run,
    xcom,
)
from support.entity_files import ROOT

pytestmark = pytest.mark.slow

CONSUMER = "de_loaded_consumer"
URI = "x-entity-etl://de/company_de"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    home = tmp_path_factory.mktemp("airflow-assets")
    dags = dags_folder_with(home / "dags", ROOT / "tests" / "asset_dags" / f"{CONSUMER}.py")
    with local_airflow(home, extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(dags)}) as server:
        yield server


def test_the_asset_uri_names_entity_and_target_table() -> None:
    assert entity_asset_uri("de", "company_de") == URI


def test_an_entity_load_triggers_the_dag_scheduled_on_its_asset(airflow: LocalAirflow) -> None:
    start, end = DEMO_INTERVALS["de"]
    unpause(airflow, CONSUMER)  # before the load: the asset event must queue a run of it
    run_id = "manual__assets-de"
    trigger(airflow, "etl_de", run_id, end)  # logical date D: the interval [D - 1 day, D)
    unpause(airflow, "etl_de")
    run = wait_for_run(airflow, "etl_de", run_id, timeout=420)
    assert run["state"] == "success", (task_states(airflow, "etl_de", run_id), airflow.log_tail())

    # make airflow's task logs are at INFO: the stage's plan line is there.
    assert "de: extract: plan: " in task_log(airflow, "etl_de", run_id, "extract")

    # The asset event the run's publish_loaded emitted, as Airflow recorded it.
    answer = airflow.api(f"assets/events?source_dag_id=etl_de&source_run_id={quoted(run_id)}&limit=10")
    (event,) = answer["asset_events"]
    assert event["uri"] == URI and event["source_task_id"] == "publish_loaded"
    extra = event["extra"]
    target_rows = _count(airflow.home / "target.db", "company_de")
    assert extra["entity"] == "de" and extra["target_table"] == "company_de" and extra["run_id"] == run_id
    assert (extra["interval_start"], extra["interval_end"]) == (start.isoformat(), end.isoformat())
    assert extra["target_rows"] == target_rows > 0
    assert extra["rows_extracted"] >= extra["rows_loaded"] > 0
    assert extra["rows_extracted"] - extra["duplicates_removed"] == extra["rows_loaded"]
    assert extra["extract_uri"].endswith("_manifest.json") and Path(extra["extract_uri"]).is_file()
    # The JSON event for systems outside Airflow is still published, with the same figures.
    outbox = _outbox_event(airflow.home / "entity-loaded.jsonl", run_id)
    assert outbox["event_id"] == extra["event_id"] and outbox["extract_uri"] == extra["extract_uri"]
    assert outbox["row_counts"]["loaded"] == extra["rows_loaded"]
    assert outbox["row_counts"]["target_rows"] == extra["target_rows"]

    # The scheduler started a consumer run from that event (unpausing etl_de also let the scheduler make its
    # latest scheduled run, whose own event starts another consumer run); its task saw the extra.
    def consumer_run() -> dict[str, Any] | None:
        runs = airflow.api(f"dags/{CONSUMER}/dagRuns?limit=20")["dag_runs"]
        for candidate in runs:
            path = f"dags/{CONSUMER}/dagRuns/{quoted(candidate['dag_run_id'])}/upstreamAssetEvents"
            if event["id"] in {e["id"] for e in airflow.api(path)["asset_events"]}:
                return dict(candidate)
        return None

    triggered = wait_for(consumer_run, 120, f"a run of {CONSUMER} started by the event of {run_id}")
    assert triggered["run_type"] == "asset_triggered"
    assert wait_for_run(airflow, CONSUMER, triggered["dag_run_id"], timeout=180)["state"] == "success"
    seen = xcom(airflow, CONSUMER, triggered["dag_run_id"], "read_loaded")
    assert extra in seen


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])


def _outbox_event(path: Path, run_id: str) -> dict[str, Any]:
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    (event,) = [e for e in events if e["run_id"] == run_id]
    return event
