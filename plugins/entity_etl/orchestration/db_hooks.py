"""Databases opened on the Airflow side: MySQL connections through the mysql provider's ``MySqlHook``.

A ``mysql`` connection made in the Airflow UI (the provider's form, its Test button) is what the hook
reads: host, port, login, password, schema and the extras the form offers (``charset``, ``cursor``,
``ssl``, ``ssl_mode``, ``unix_socket``, ``client``). :func:`open_airflow_database` gives the NPS
DAG's reporting database a :class:`~entity_etl.runtime.databases.Database` whose DB-API connection is
``MySqlHook.get_conn()``'s; other connection types (``sqlite``) open as the runtime opens them. The
stage runtime (``entity_etl.runtime``) never imports this module, nor Airflow.
"""

from __future__ import annotations

from typing import Any

from entity_etl.orchestration.connections import airflow_connection
from entity_etl.runtime.connections import ConnectionInfo
from entity_etl.runtime.databases import Database, DatabaseError, MySQLDatabase, open_database

MYSQL_CONN_TYPES = ("mysql", "mariadb", "aurora_mysql")


class HookMySQLDatabase(MySQLDatabase):
    """:class:`MySQLDatabase` whose connection comes from ``MySqlHook(mysql_conn_id=...).get_conn()``."""

    def __init__(self, info: ConnectionInfo, hook: Any) -> None:
        super().__init__(info)
        self.hook = hook

    def connect(self) -> None:
        import MySQLdb

        settings = self.session_variables()
        try:
            conn = self.hook.get_conn()
        except MySQLdb.Error as exc:
            raise DatabaseError(f"cannot connect to {self.info.describe()} (MySqlHook): {exc.args[-1]}") from None
        if not isinstance(conn, MySQLdb.connections.Connection):
            conn.close()
            raise DatabaseError(
                f"connection {self.info.conn_id!r}: extra client {self.info.extra.get('client')!r} is not "
                "supported here: use mysqlclient (the default; leave client unset)"
            )
        try:
            conn.set_character_set("utf8mb4")  # the reporting table's; the hook sets a charset only from extras
            conn.autocommit(False)
        except MySQLdb.Error as exc:
            conn.close()
            raise DatabaseError(f"{self.info.conn_id}: cannot use utf8mb4: {exc.args[-1]}") from None
        self._conn = conn
        try:
            self._set_session(conn, settings)
        except DatabaseError:
            self.close()
            raise


def open_airflow_database(conn_id: str) -> Database:
    """``conn_id`` resolved through Airflow; a MySQL one connects through ``MySqlHook``."""
    info = airflow_connection(conn_id)
    if info.conn_type not in MYSQL_CONN_TYPES:
        return open_database(info)
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    return HookMySQLDatabase(info, MySqlHook(mysql_conn_id=conn_id))
