"""Which data interval a run of ``etl_de`` loads, as README "Which interval does a run load?" says.

Asked of real Airflow 3: the DAG from ``dags/`` serialized into a migrated metadata DB, the
scheduler's timetable for a scheduled run, and the REST API (the one the UI's Trigger and Backfill
dialogs call, through FastAPI's test client) for manual runs and backfills. ``de`` is ``@daily``
from 2026-11-01; its demo data lies in [2026-11-01, 2026-11-02).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "etl_de"
UTC = dt.UTC
NOV_1, NOV_2, NOV_3 = (dt.datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3))


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    """The Airflow REST API on a metadata DB holding the repo's DAGs (all users admins, no login)."""
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    # The API server signs its tokens with this; a fresh AIRFLOW_HOME (a clean CI clone) has none yet.
    os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", "test-only-signing-key-" + "0" * 64)  # HS512 wants 64+ bytes
    os.environ["ETL_INCLUDE_DIR"] = str(ROOT / "include")
    Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    from airflow.api_fastapi.app import create_app
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from fastapi.testclient import TestClient

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert DAG_ID in bag.dag_ids, bag.import_errors
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    with TestClient(create_app()) as client:
        yield client
    os.environ.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", None)
    os.environ.pop("ETL_INCLUDE_DIR", None)


@pytest.fixture
def client(api: Any) -> Iterator[Any]:
    """The API with no runs or backfills of ``etl_de`` left by another test (none left for the next)."""
    _forget_runs()
    yield api
    _forget_runs()


def _forget_runs() -> None:
    from airflow.models.backfill import Backfill, BackfillDagRun
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import delete, select

    with create_session() as session:
        ids = select(Backfill.id).where(Backfill.dag_id == DAG_ID)
        session.execute(delete(BackfillDagRun).where(BackfillDagRun.backfill_id.in_(ids)))
        session.execute(delete(DagRun).where(DagRun.dag_id == DAG_ID))
        session.execute(delete(Backfill).where(Backfill.dag_id == DAG_ID))


def _runs(client: Any) -> list[tuple[str, dt.datetime | None, dt.datetime | None, dt.datetime | None]]:
    """(run type, logical date, interval start, interval end) of every run of the DAG."""
    response = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "id"})
    assert response.status_code == 200, response.text
    return [
        (r["run_type"], _when(r["logical_date"]), _when(r["data_interval_start"]), _when(r["data_interval_end"]))
        for r in response.json()["dag_runs"]
    ]


def _trigger(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_a_scheduled_run_loads_the_interval_that_ends_when_it_runs(api: Any) -> None:
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.timetables.base import TimeRestriction
    from airflow.utils.session import create_session

    with create_session() as session:
        dag = SerializedDagModel.get_dag(DAG_ID, session=session)
    assert dag is not None
    timetable = dag.timetable
    first = timetable.next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(NOV_1, None, catchup=True)
    )
    assert first is not None and first.data_interval is not None
    assert (first.data_interval.start, first.data_interval.end) == (NOV_1, NOV_2)
    assert first.logical_date == NOV_1  # the logical date is the interval's start ...
    assert first.run_after == NOV_2  # ... and the run starts once the interval is over
    second = timetable.next_dagrun_info(
        last_automated_data_interval=first.data_interval, restriction=TimeRestriction(NOV_1, None, catchup=True)
    )
    assert second is not None and (second.logical_date, second.run_after) == (NOV_2, NOV_3)


@pytest.mark.parametrize(
    "logical_date",
    [NOV_2, NOV_2 + dt.timedelta(hours=9, minutes=30), NOV_3 - dt.timedelta(seconds=1)],
    ids=["midnight", "09:30", "23:59:59"],
)
def test_a_manual_run_at_t_loads_the_last_complete_interval_before_t(client: Any, logical_date: dt.datetime) -> None:
    run = _trigger(client, logical_date=_iso(logical_date))
    assert (_when(run["data_interval_start"]), _when(run["data_interval_end"])) == (NOV_1, NOV_2)
    assert _when(run["logical_date"]) == logical_date  # not the interval's start, unlike a scheduled run


def test_the_ui_default_a_manual_run_now_loads_yesterday(client: Any) -> None:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    run = _trigger(client, logical_date=_iso(now))
    today = now.replace(hour=0, minute=0, second=0)
    assert (_when(run["data_interval_start"]), _when(run["data_interval_end"])) == (
        today - dt.timedelta(days=1),
        today,
    )


def test_a_manual_run_with_an_interval_given_loads_exactly_it(client: Any) -> None:
    run = _trigger(client, logical_date=_iso(NOV_1), data_interval_start=_iso(NOV_1), data_interval_end=_iso(NOV_2))
    assert (_when(run["data_interval_start"]), _when(run["data_interval_end"])) == (NOV_1, NOV_2)


def test_a_manual_run_without_a_logical_date_has_no_interval_and_the_stages_refuse(client: Any) -> None:
    run = _trigger(client, logical_date=None)
    assert run["logical_date"] is None and run["data_interval_start"] is None and run["data_interval_end"] is None
    from entity_etl.orchestration.stage_operator import EntityStageOperator

    task = next(t for t in _dag_tasks() if isinstance(t, EntityStageOperator))
    with pytest.raises(ValueError, match=r"de: the run has no data interval; trigger it with a logical date"):
        task._interval({"data_interval_start": None, "data_interval_end": None, "logical_date": None})


def _dag_tasks() -> list[Any]:
    from entity_etl.config.loader import find_entity
    from entity_etl.orchestration.factory import build_entity_dag

    return list(build_entity_dag(find_entity("de", ROOT / "include" / "entities", ROOT / "include" / "sql")).tasks)


def test_a_backfill_date_is_the_start_of_the_interval_it_loads(client: Any) -> None:
    body = {"dag_id": DAG_ID, "from_date": _iso(NOV_1), "to_date": _iso(NOV_1), "max_active_runs": 1}
    response = client.post("/api/v2/backfills", json={**body, "reprocess_behavior": "none"})
    assert response.status_code == 200, response.text
    assert _runs(client) == [("backfill", NOV_1, NOV_1, NOV_2)]


def test_missing_runs_skips_a_date_a_manual_run_took(client: Any) -> None:
    """The trap of the issue: a manual run with logical date 2026-11-02 loaded [11-01, 11-02), yet a
    backfill of 11-02 under "Missing Runs" creates nothing for 11-02, so [11-02, 11-03) is never loaded."""
    _trigger(client, logical_date=_iso(NOV_2))
    body = {"dag_id": DAG_ID, "from_date": _iso(NOV_1), "to_date": _iso(NOV_2), "max_active_runs": 1}
    dry = client.post("/api/v2/backfills/dry_run", json={**body, "reprocess_behavior": "none"})
    assert dry.status_code == 200, dry.text
    assert [_when(b["logical_date"]) for b in dry.json()["backfills"]] == [NOV_1]
    response = client.post("/api/v2/backfills", json={**body, "reprocess_behavior": "none"})
    assert response.status_code == 200, response.text
    assert sorted(_runs(client), key=lambda r: r[0]) == [
        ("backfill", NOV_1, NOV_1, NOV_2),
        ("manual", NOV_2, NOV_1, NOV_2),
    ]


def test_the_readme_table_says_the_same() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Which interval does a run load?\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[0]: cells[-1]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
        for cells in [[c.strip() for c in line.strip("|").split(" | ")]]
    }
    demo = "[2026-11-01, 2026-11-02)"
    assert rows["scheduled"] == demo
    assert rows["manual at T"].startswith(demo)
    assert rows["manual, the UI's Trigger as it opens"].startswith("the last complete interval before now")
    assert rows["manual, interval given"] == "exactly the one given"
    assert "the run has no data interval" in rows["manual, no logical date"]
    assert demo in rows["backfill from D1 to D2"]
    assert "Missing Runs" in section and "creates only\nthe run for 2026-11-01" in section
