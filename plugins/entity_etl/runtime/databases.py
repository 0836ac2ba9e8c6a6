"""Database access for the stages: one class per dialect behind one small interface.

* MySQL/MariaDB (Amazon RDS) through ``mysqlclient``: unbuffered server-side cursor for the extract,
  raw bytes (no per-value type conversion), ``LOAD DATA LOCAL INFILE`` for staging.
* SQLite (the embedded default): batched inserts in one transaction.
"""

from __future__ import annotations

import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from entity_etl.runtime import csv_codec
from entity_etl.runtime.connections import ConnectionInfo

_TYPE = re.compile(r"^(?P<base>[a-z]+)(\((?P<args>[\d,\s]+)\))?$")
# The named parameters the runtime binds into entity SQL: the data interval, and the extract chunk bounds.
_INTERVAL_PARAM = re.compile(r"(?<![:\w]):(data_interval_start|data_interval_end|chunk_after|chunk_upto)\b")


class DatabaseError(RuntimeError):
    """A database failure, with a message safe to log (no credentials)."""


def split_type(column_type: str) -> tuple[str, list[int]]:
    match = _TYPE.fullmatch(column_type.replace(" ", ""))
    if not match:
        raise ValueError(f"bad column type {column_type!r}")
    args = [int(a) for a in (match.group("args") or "").split(",") if a]
    return match.group("base"), args


class Database(ABC):
    dialect: str

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info

    # -- SQL building ---------------------------------------------------------------------------
    @abstractmethod
    def quote(self, identifier: str) -> str: ...

    def table(self, name: str) -> str:
        return ".".join(self.quote(p) for p in name.split("."))

    @abstractmethod
    def column_type(self, column_type: str) -> str: ...

    @abstractmethod
    def bind_interval(self, sql: str) -> str:
        """Rewrite ``:data_interval_start``/``:data_interval_end`` into the driver's paramstyle."""

    @abstractmethod
    def placeholder(self) -> str: ...

    @abstractmethod
    def upsert_sql(self, target: str, columns: Sequence[str], key: Sequence[str], select_sql: str) -> str: ...

    @abstractmethod
    def autoincrement_pk(self) -> str: ...

    def create_table_sql(
        self, table: str, columns: Sequence[tuple[str, str]], *, key: Sequence[str] = (), row_id: bool = False
    ) -> str:
        parts = []
        if row_id:
            parts.append(f"{self.quote('_etl_row')} {self.autoincrement_pk()}")
        for name, ctype in columns:
            not_null = " NOT NULL" if name in key else ""
            parts.append(f"{self.quote(name)} {self.column_type(ctype)}{not_null}")
        if key:
            parts.append("PRIMARY KEY (" + ", ".join(self.quote(k) for k in key) + ")")
        return f"CREATE TABLE IF NOT EXISTS {self.table(table)} (" + ", ".join(parts) + ")" + self.table_options()

    def table_options(self) -> str:
        return ""

    # -- execution ------------------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> int: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def stream(
        self, sql: str, params: dict[str, Any], fetch_rows: int
    ) -> tuple[list[str], Iterator[Sequence[Sequence[bytes | None]]]]:
        """Run ``sql`` and return (column names, iterator of batches of rows as raw UTF-8 bytes)."""

    @abstractmethod
    def load_csv(self, table: str, columns: Sequence[str], path: Path) -> int:
        """Bulk-load one decompressed CSV file (see :mod:`csv_codec`) into ``table``; return rows."""

    def table_exists(self, table: str) -> bool:
        try:
            self.query(f"SELECT 1 FROM {self.table(table)} WHERE 1 = 0")
        except DatabaseError:
            self.rollback()
            return False
        return True

    def __enter__(self) -> Database:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SqliteDatabase(Database):
    dialect = "sqlite"
    insert_batch_rows = 5_000

    def __init__(self, info: ConnectionInfo) -> None:
        super().__init__(info)
        path = info.host or info.schema
        if not path:
            raise DatabaseError(f"connection {info.conn_id!r}: sqlite needs the database path in 'host'")
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError("not connected")
        return self._conn

    def quote(self, identifier: str) -> str:
        return '"' + identifier + '"'

    def column_type(self, column_type: str) -> str:
        base, _ = split_type(column_type)
        return {"integer": "INTEGER", "bigint": "INTEGER", "boolean": "INTEGER", "float": "REAL"}.get(base, "TEXT")

    def bind_interval(self, sql: str) -> str:
        return sql  # sqlite3 understands :name natively

    def placeholder(self) -> str:
        return "?"

    def autoincrement_pk(self) -> str:
        return "INTEGER PRIMARY KEY AUTOINCREMENT"

    def upsert_sql(self, target: str, columns: Sequence[str], key: Sequence[str], select_sql: str) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        updates = ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}" for c in columns if c not in key)
        conflict = ", ".join(self.quote(k) for k in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return f"INSERT INTO {self.table(target)} ({cols}) {select_sql} ON CONFLICT ({conflict}) {action}"

    def connect(self) -> None:
        if not Path(self.path).parent.exists():
            raise DatabaseError(f"cannot open {self.info.describe()}: directory does not exist")
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level="DEFERRED")
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open {self.info.describe()}: {exc}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> int:
        try:
            return self.conn.execute(sql, params or ()).rowcount
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc}") from None

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params or ()).fetchall()
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc}") from None

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def stream(
        self, sql: str, params: dict[str, Any], fetch_rows: int
    ) -> tuple[list[str], Iterator[Sequence[Sequence[bytes | None]]]]:
        try:
            cursor = self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.info.conn_id}: source query failed: {exc}") from None
        names = [d[0] for d in cursor.description]

        def encode(value: Any) -> bytes | None:
            if value is None:
                return None
            if isinstance(value, bytes):
                return value
            if isinstance(value, bool):
                return b"1" if value else b"0"
            return str(value).encode("utf-8")

        def batches() -> Iterator[Sequence[Sequence[bytes | None]]]:
            while True:
                try:
                    rows = cursor.fetchmany(fetch_rows)
                except sqlite3.Error as exc:
                    raise DatabaseError(f"{self.info.conn_id}: source query failed: {exc}") from None
                if not rows:
                    return
                yield [[encode(v) for v in row] for row in rows]

        return names, batches()

    def load_csv(self, table: str, columns: Sequence[str], path: Path) -> int:
        cols = ", ".join(self.quote(c) for c in columns)
        sql = f"INSERT INTO {self.table(table)} ({cols}) VALUES ({', '.join('?' * len(columns))})"
        loaded = 0
        batch: list[list[str | None]] = []
        with path.open("rb") as handle:
            for record in csv_codec.iter_records(handle, expected_fields=len(columns), source=str(path)):
                batch.append(record)
                if len(batch) >= self.insert_batch_rows:
                    self.conn.executemany(sql, batch)
                    loaded += len(batch)
                    batch.clear()
        if batch:
            self.conn.executemany(sql, batch)
            loaded += len(batch)
        return loaded


class MySQLDatabase(Database):
    dialect = "mysql"

    def __init__(self, info: ConnectionInfo) -> None:
        super().__init__(info)
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise DatabaseError("not connected")
        return self._conn

    def quote(self, identifier: str) -> str:
        return "`" + identifier + "`"

    def column_type(self, column_type: str) -> str:
        base, args = split_type(column_type)
        if base == "string":
            return f"VARCHAR({args[0] if args else 255})"
        if base == "decimal":
            return f"DECIMAL({args[0]},{args[1]})"
        return {
            "text": "MEDIUMTEXT",
            "integer": "INT",
            "bigint": "BIGINT",
            "float": "DOUBLE",
            "boolean": "BOOLEAN",
            "date": "DATE",
            "datetime": "DATETIME(6)",
        }[base]

    def table_options(self) -> str:
        # Binary collation: 'a' and 'A', or 'x' and 'x ', are different keys, as they are in the source.
        return " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

    def bind_interval(self, sql: str) -> str:
        return _INTERVAL_PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))

    def placeholder(self) -> str:
        return "%s"

    def autoincrement_pk(self) -> str:
        return "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"

    def upsert_sql(self, target: str, columns: Sequence[str], key: Sequence[str], select_sql: str) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        updates = ", ".join(f"{self.quote(c)} = VALUES({self.quote(c)})" for c in columns if c not in key)
        if not updates:
            updates = f"{self.quote(key[0])} = {self.quote(key[0])}"
        return f"INSERT INTO {self.table(target)} ({cols}) {select_sql} ON DUPLICATE KEY UPDATE {updates}"

    def _errors(self) -> Any:
        import MySQLdb

        return MySQLdb.Error

    def _connect_kwargs(self) -> dict[str, Any]:
        info = self.info
        kwargs: dict[str, Any] = {
            "user": info.login or "",
            "passwd": info.password or "",
            "charset": "utf8mb4",
            "local_infile": 1,
            "connect_timeout": int(info.extra.get("connect_timeout", 10)),
        }
        if info.schema:
            kwargs["db"] = info.schema
        if info.extra.get("unix_socket"):
            kwargs["unix_socket"] = info.extra["unix_socket"]
        else:
            kwargs["host"] = info.host or "localhost"
            kwargs["port"] = info.port or 3306
        if info.extra.get("ssl"):
            ssl = info.extra["ssl"]
            kwargs["ssl"] = ssl if isinstance(ssl, dict) else {"ca": ssl}
        return kwargs

    def connect(self) -> None:
        import MySQLdb

        try:
            self._conn = MySQLdb.connect(**self._connect_kwargs())
        except MySQLdb.Error as exc:
            raise DatabaseError(f"cannot connect to {self.info.describe()}: {exc.args[-1]}") from None
        self._conn.autocommit(False)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> int:
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, params)
                return int(cursor.rowcount)
        except self._errors() as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc.args[-1]}") from None

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        except self._errors() as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc.args[-1]}") from None

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        try:
            self.conn.rollback()
        except self._errors():
            pass

    def stream(
        self, sql: str, params: dict[str, Any], fetch_rows: int
    ) -> tuple[list[str], Iterator[Sequence[Sequence[bytes | None]]]]:
        import MySQLdb
        import MySQLdb.cursors

        # A second, raw connection: no type conversion at all (conv={}) and bytes for text
        # (use_unicode=False), so values go from the wire to the CSV without a Python object per type.
        try:
            raw_conn = MySQLdb.connect(**self._connect_kwargs(), use_unicode=False, conv={})
        except MySQLdb.Error as exc:
            raise DatabaseError(f"cannot connect to {self.info.describe()}: {exc.args[-1]}") from None
        try:
            cursor = raw_conn.cursor(MySQLdb.cursors.SSCursor)
            cursor.execute(self.bind_interval(sql), params)
        except MySQLdb.Error as exc:
            raw_conn.close()
            raise DatabaseError(f"{self.info.conn_id}: source query failed: {exc.args[-1]}") from None
        names = [d[0].decode() if isinstance(d[0], bytes) else d[0] for d in cursor.description]

        def batches() -> Iterator[Sequence[Sequence[bytes | None]]]:
            try:
                while True:
                    try:
                        rows = cursor.fetchmany(fetch_rows)
                    except MySQLdb.Error as exc:
                        raise DatabaseError(f"{self.info.conn_id}: source query failed: {exc.args[-1]}") from None
                    if not rows:
                        return
                    yield rows
            finally:
                cursor.close()
                raw_conn.close()

        return names, batches()

    def load_csv(self, table: str, columns: Sequence[str], path: Path) -> int:
        cols = ", ".join(self.quote(c) for c in columns)
        escaped = str(path).replace("\\", "\\\\").replace("'", "\\'")
        sql = (
            f"LOAD DATA LOCAL INFILE '{escaped}' INTO TABLE {self.table(table)} {csv_codec.MYSQL_LOAD_OPTIONS} ({cols})"
        )
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql)
                loaded = int(cursor.rowcount)
                cursor.execute("SHOW WARNINGS LIMIT 5")
                warnings = cursor.fetchall()
        except self._errors() as exc:
            raise DatabaseError(f"{self.info.conn_id}: LOAD DATA into {table} failed: {exc.args[-1]}") from None
        if warnings:
            # Truncation or a bad value: refuse rather than load something other than the extract.
            detail = "; ".join(str(w[2]) for w in warnings)
            raise DatabaseError(f"{self.info.conn_id}: LOAD DATA into {table} gave warnings: {detail}")
        return loaded


def open_database(info: ConnectionInfo) -> Database:
    if info.conn_type in ("mysql", "mariadb", "aurora_mysql"):
        return MySQLDatabase(info)
    if info.conn_type == "sqlite":
        return SqliteDatabase(info)
    raise DatabaseError(f"connection {info.conn_id!r}: unsupported conn_type {info.conn_type!r} (mysql or sqlite)")
