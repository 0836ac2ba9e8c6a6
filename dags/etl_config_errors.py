"""Airflow DAG file that reports invalid entity files as an import error (file: field: message).

It defines no DAG. Keeping it apart from dags/etl_entities.py means one bad entity file shows up in
the Airflow UI's import errors without taking the other entities' DAGs down.
"""

from entity_etl.orchestration.factory import raise_config_errors

raise_config_errors()
