"""Database access for the stages: one class per dialect behind one small interface.

* :mod:`.base`: the :class:`Database` interface, :class:`DatabaseError`, type parsing, the target guard;
* :mod:`.mysql`: MySQL/MariaDB (Amazon RDS) through ``mysqlclient``: unbuffered server-side cursor for
  the extract, raw bytes (no per-value type conversion), ``LOAD DATA LOCAL INFILE`` for staging;
* :mod:`.sqlite`: SQLite (the embedded default): batched inserts in one transaction.
"""

from __future__ import annotations

from entity_etl.runtime.connections import ConnectionInfo
from entity_etl.runtime.databases.base import Database, DatabaseError, replaces, sha256_hex, split_type
from entity_etl.runtime.databases.mysql import SESSION_VARIABLES, MySQLDatabase, server_collation
from entity_etl.runtime.databases.sqlite import SqliteDatabase

__all__ = [
    "SESSION_VARIABLES",
    "Database",
    "DatabaseError",
    "MySQLDatabase",
    "SqliteDatabase",
    "open_database",
    "replaces",
    "server_collation",
    "sha256_hex",
    "split_type",
]


def open_database(info: ConnectionInfo, *, local_infile: bool = False, read_only: bool = False) -> Database:
    """``local_infile``: allow ``LOAD DATA LOCAL INFILE`` on this connection (MySQL; off by default).
    ``read_only``: a source (SQLite: opened ``mode=ro``, so a missing file is an error, never created)."""
    if info.conn_type in ("mysql", "mariadb", "aurora_mysql"):
        return MySQLDatabase(info, local_infile=local_infile)
    if info.conn_type == "sqlite":
        return SqliteDatabase(info, read_only=read_only)
    raise DatabaseError(f"connection {info.conn_id!r}: unsupported conn_type {info.conn_type!r} (mysql or sqlite)")
