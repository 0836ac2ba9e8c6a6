#!/bin/sh
# The mysql:8.4 stand-in's entrypoint (MariaDB): initialise the data directory once from MYSQL_*, run
# /docker-entrypoint-initdb.d/*.sql, then run the server with the given options.
set -eu
SOCKET=/run/mysqld/mysqld.sock
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --datadir=/var/lib/mysql --socket=$SOCKET --skip-networking --skip-log-bin &
  pid=$!
  for _ in $(seq 1 60); do mariadb-admin --socket=$SOCKET ping >/dev/null 2>&1 && break; sleep 1; done
  {
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD is required}';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "${MYSQL_DATABASE:-}" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"; fi
    if [ -n "${MYSQL_USER:-}" ]; then
      echo "CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '${MYSQL_PASSWORD:?}';"
      echo "CREATE USER '$MYSQL_USER'@'localhost' IDENTIFIED BY '${MYSQL_PASSWORD}';"
      if [ -n "${MYSQL_DATABASE:-}" ]; then
        echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';"
        echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'localhost';"
      fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket=$SOCKET -uroot
  for f in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$f" ] || continue
    echo "mysql stand-in (MariaDB): running $f"
    mariadb --socket=$SOCKET -uroot -p"$MYSQL_ROOT_PASSWORD" < "$f"
  done
  mariadb-admin --socket=$SOCKET -uroot -p"$MYSQL_ROOT_PASSWORD" shutdown
  wait $pid || true
  echo "mysql stand-in (MariaDB): initialised /var/lib/mysql"
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --socket=$SOCKET --bind-address=0.0.0.0 --skip-log-bin "$@"
