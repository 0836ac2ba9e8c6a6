# STAND-IN for apache/airflow:3.3.1-python3.12, built here because no image registry is reachable
# (deploy/local-images/build.py). Laid out as the official image is where docker-compose.yaml and
# deploy/compose/airflow.Dockerfile rely on it: user airflow (uid 50000, group 0), AIRFLOW_HOME=/opt/airflow,
# pip installs to the user site (PIP_USER), `airflow` as the entrypoint, curl for the health checks.
# apache-airflow==3.3.1 and the providers the compose uses come from PyPI under Airflow's own 3.3.1 /
# Python 3.12 constraints (deploy/compose/airflow-constraints-3.3.1-py3.12.txt, copied from upstream).
ARG BASE_IMAGE=local/python:3.12-slim-bookworm
FROM ${BASE_IMAGE}
# gcc, pkg-config and the MariaDB client headers: mysqlclient compiles (the official image has them too).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl gcc libc6-dev pkg-config libmariadb-dev libpq5 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home --shell /bin/bash airflow \
 && install -d -o airflow -g 0 -m 0775 /opt/airflow /opt/airflow/logs /opt/airflow/dags /opt/airflow/plugins
COPY constraints.txt /opt/airflow-constraints-3.3.1-py3.12.txt
USER airflow
# PYTHONUSERBASE: root (airflow-init runs as 0:0) and any uid see the same user site.
ENV AIRFLOW_HOME=/opt/airflow PIP_USER=true PYTHONUSERBASE=/home/airflow/.local \
    PATH=/home/airflow/.local/bin:/usr/local/bin:/usr/bin:/bin \
    PIP_NO_CACHE_DIR=1
RUN pip install --constraint /opt/airflow-constraints-3.3.1-py3.12.txt \
      "apache-airflow[postgres,amazon,mysql]==3.3.1" \
      apache-airflow-providers-standard apache-airflow-providers-common-sql \
 && airflow version
WORKDIR /opt/airflow
ENTRYPOINT ["airflow"]
CMD ["version"]
