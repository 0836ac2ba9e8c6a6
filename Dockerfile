# The AWS Batch job image: `etlctl run-stage` and the stage runtime, without Airflow.
#
#   docker build -t entity-etl-stage .
#   docker run --rm entity-etl-stage etlctl validate
#
# Two stages: wheels are built (mysqlclient compiles against libmariadb) in the first, and the second
# holds only the runtime's dependencies, the MariaDB client library and a non-root user.
# Image names are build arguments whose defaults are the official images; where no registry is
# reachable, deploy/local-images/build.py makes local stand-ins (make test-deploy passes them).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmariadb-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY plugins/entity_etl ./plugins/entity_etl
# The runtime's dependencies at the versions of uv.lock (no extras, no dev group: no Airflow), as wheels.
RUN uv export --frozen --no-default-groups --no-emit-project --no-hashes -o requirements.txt \
 && pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin etl
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels entity-etl \
 && rm -rf /wheels \
 && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('airflow') is not None)"
# Entity files and SQL: baked in here; ETL_INCLUDE_DIR can point at a mounted or synced copy instead.
COPY include /opt/entity-etl/include
ENV ETL_INCLUDE_DIR=/opt/entity-etl/include \
    ETL_SCRATCH_DIR=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER etl
WORKDIR /home/etl
ENTRYPOINT []
CMD ["etlctl", "--help"]
