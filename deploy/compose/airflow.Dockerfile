# The Airflow image of docker-compose.yaml: the official Airflow 3.3.1 image (Python 3.12, as on
# MWAA) plus this package's runtime dependencies, resolved against Airflow's own constraints.
# dags/, plugins/ and include/ are mounted by the compose file, so code edits need no rebuild.
FROM apache/airflow:3.3.1-python3.12
COPY --chown=airflow:0 pyproject.toml README.md /opt/entity-etl/
COPY --chown=airflow:0 plugins/entity_etl /opt/entity-etl/plugins/entity_etl
RUN pip install --no-cache-dir \
      --constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt" \
      "/opt/entity-etl"
