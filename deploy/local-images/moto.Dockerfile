# STAND-IN for motoserver/moto, built here because no image registry is reachable
# (deploy/local-images/build.py): the same moto release from PyPI on the python stand-in, started as the
# official image starts it (moto_server on 0.0.0.0, port MOTO_PORT, default 5000).
ARG BASE_IMAGE=local/python:3.12-slim-bookworm
FROM ${BASE_IMAGE}
ARG MOTO_VERSION
RUN pip install --no-cache-dir "moto[server]==${MOTO_VERSION}" && moto_server --help >/dev/null
ENV MOTO_PORT=5000
EXPOSE 5000
ENTRYPOINT ["/bin/sh", "-c", "exec moto_server -H 0.0.0.0 -p \"${MOTO_PORT}\""]
