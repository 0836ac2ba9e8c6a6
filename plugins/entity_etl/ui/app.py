"""The FastAPI app of the Entities page; the API server mounts it at ``/entities`` (``fastapi_apps``).

``GET /entities/`` is the page, ``GET /entities/api/entities`` the same rows as JSON. Behind Airflow,
both need a logged-in user allowed to read DAG runs (the UI's JWT cookie or a bearer token), checked
by Airflow's own ``requires_access_dag``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from entity_etl.runtime.run_store import RunStore, open_run_store
from entity_etl.ui.entity_list import EntityInfo, entities
from entity_etl.ui.overview import entity_rows
from entity_etl.ui.page import render_page


def _airflow_run_readers() -> list[Any]:
    """Airflow's check that the caller may read DAG runs (imported only inside the API server)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]


def create_app(
    *,
    store: Callable[[], RunStore] = open_run_store,
    entity_list: Callable[[], list[EntityInfo]] = entities,
    require_login: bool = True,
) -> FastAPI:
    app = FastAPI(
        title="Entities",
        description="Every entity, its last run and the trend of its last runs, from the run store.",
        dependencies=_airflow_run_readers() if require_login else [],
    )

    @app.get("/", response_class=HTMLResponse)
    def entities_page() -> str:
        run_store = store()
        return render_page(entity_rows(run_store, entity_list()), store=run_store.describe())

    @app.get("/api/entities")
    def entities_json() -> dict[str, Any]:
        run_store = store()
        rows = entity_rows(run_store, entity_list())
        return {"store": run_store.describe(), "entities": [row.as_json() for row in rows]}

    return app
