"""The Airflow plugin of the entity ETL package (Airflow's plugin manager loads this file from the
plugins folder; the package itself, ``entity_etl/``, is in ``.airflowignore``).

* the run-note listener (``entity_etl.orchestration.run_note``): each finished entity run gets its
  summary as its DAG-run note;
* the "Entities" page (``entity_etl.ui``): a FastAPI app the API server mounts at ``/entities``, shown
  in the UI's navigation as an embedded view (``/plugin/entities``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from entity_etl.orchestration.run_note import run_note_listener
from entity_etl.ui.app import create_app

# Class lists, as AirflowPlugin declares them (hence the RUF012 exemptions).
ENTITIES_APP = {"app": create_app(), "url_prefix": "/entities", "name": "Entities"}
ENTITIES_VIEW = {
    "name": "Entities",
    "href": "entities/",  # relative: the app above, also behind a base URL
    "url_route": "entities",  # embedded in the UI at /plugin/entities
    "destination": "nav",
}


class EntityEtlPlugin(AirflowPlugin):
    name = "entity_etl"
    listeners = [run_note_listener]  # noqa: RUF012
    fastapi_apps = [ENTITIES_APP]  # noqa: RUF012
    external_views = [ENTITIES_VIEW]  # noqa: RUF012
