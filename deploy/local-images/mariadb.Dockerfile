# STAND-IN for mysql:8.4, built here because no image registry is reachable (deploy/local-images/build.py).
# It is MariaDB (Debian bookworm's 10.11), not MySQL 8.4: Debian has no MySQL server. Like the official
# image it reads MYSQL_ROOT_PASSWORD / MYSQL_USER / MYSQL_PASSWORD / MYSQL_DATABASE on first start, runs
# /docker-entrypoint-initdb.d/*.sql, passes arguments starting with "-" to the server, and has mysqladmin.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends mariadb-server mariadb-client \
 && rm -rf /var/lib/apt/lists/* /var/lib/mysql/* \
 && install -d -o mysql -g mysql -m 0755 /var/lib/mysql /run/mysqld /docker-entrypoint-initdb.d
COPY mariadb-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER mysql
EXPOSE 3306
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
