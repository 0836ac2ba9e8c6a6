# The Airflow image of docker-compose.yaml: the official Airflow 3.3.1 image (Python 3.12, as on
# MWAA) plus this package's runtime dependencies and the NPS DAG's extra (matplotlib), resolved against
# Airflow's own constraints. dags/, plugins/ and include/ are mounted by the compose file, so code edits
# need no rebuild. AIRFLOW_IMAGE is the base (the compose file passes it; tests pass a local stand-in).
# The constraints are the upstream file, committed (its first lines name the URL it was copied from), so
# the build needs PyPI only, not GitHub.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.1-python3.12
FROM ${AIRFLOW_IMAGE}
COPY --chown=airflow:0 deploy/compose/airflow-constraints-3.3.1-py3.12.txt /opt/entity-etl/constraints.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/entity-etl/
COPY --chown=airflow:0 plugins/entity_etl /opt/entity-etl/plugins/entity_etl
RUN pip install --no-cache-dir --constraint /opt/entity-etl/constraints.txt "/opt/entity-etl[nps]"
