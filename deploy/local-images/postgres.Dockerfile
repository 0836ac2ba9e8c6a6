# STAND-IN for postgres:16, built here because no image registry is reachable (deploy/local-images/build.py).
# Debian bookworm's PostgreSQL is 15, not 16: the stand-in runs 15. Like the official image it reads
# POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on first start, keeps its data in
# /var/lib/postgresql/data and has pg_isready on the PATH.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 0775 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
