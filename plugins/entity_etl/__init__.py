"""Config-driven, country-by-country batch ETL.

Two halves with a hard boundary between them:

* ``entity_etl.config`` and ``entity_etl.runtime``: the entity schema and the stage runtime.
  Plain Python, never imports Airflow; this is what the AWS Batch job image installs.
* ``entity_etl.orchestration``: the Airflow 3 side (DAG factory, compute backends, timetables).
"""

__version__ = "0.1.0"
