"""The "Entities" page of the Airflow UI (registered by ``plugins/entity_etl_plugin.py``): every entity
with its schedule, last run and a trend of its last runs, read from the run store.

``entity_list`` (the entity files, cached), ``run_history`` (the last run records per entity: one SQL
query on SQLite, one Query per entity on DynamoDB, never a Scan), ``overview`` (the rows of the page),
``page`` (HTML with inline SVG sparklines) and ``app`` (the FastAPI app the API server mounts).
"""
