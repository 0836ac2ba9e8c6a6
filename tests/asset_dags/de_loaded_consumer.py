"""Test DAG (not shipped in dags/): a downstream DAG scheduled on the Asset ``etl_de`` emits.

``tests/test_entity_assets.py`` adds it to a local Airflow's DAGs folder; the scheduler starts a run of it
from the asset event of ``etl_de``'s ``publish_loaded`` task. Its one task returns the extra of every
asset event that triggered the run, for the test to read back as XCom.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Asset, task

COMPANY_DE = Asset("x-entity-etl://de/company_de")

with DAG(
    dag_id="de_loaded_consumer",
    schedule=COMPANY_DE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["test", "asset-consumer"],
):

    @task(task_id="read_loaded")
    def read_loaded(*, triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        events = triggering_asset_events[COMPANY_DE]
        for event in events:
            print(f"company_de loaded: {event.extra}")
        return [dict(event.extra) for event in events]

    read_loaded()
