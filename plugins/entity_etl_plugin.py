"""The Airflow plugin of the entity ETL package (Airflow's plugin manager loads this file from the
plugins folder; the package itself, ``entity_etl/``, is in ``.airflowignore``).

* the run-note listener (``entity_etl.orchestration.run_note``): each finished entity run gets its
  summary as its DAG-run note.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from entity_etl.orchestration.run_note import run_note_listener


class EntityEtlPlugin(AirflowPlugin):
    name = "entity_etl"
    listeners = [run_note_listener]  # noqa: RUF012 - AirflowPlugin declares them as class lists
