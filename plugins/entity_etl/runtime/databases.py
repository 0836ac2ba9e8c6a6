"""Database access for the stages: one class per dialect behind one small interface.

* MySQL/MariaDB (Amazon RDS) through ``mysqlclient``: unbuffered server-side cursor for the extract,
  raw bytes (no per-value type conversion), ``LOAD DATA LOCAL INFILE`` for staging.
* SQLite (the embedded default): batched inserts in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from entity_etl.runtime import csv_codec
from entity_etl.runtime.connections import ConnectionInfo

_TYPE = re.compile(r"^(?P<base>[a-z]+)(\((?P<args>[\d,\s]+)\))?$")
# The named parameters the runtime binds into entity SQL: the data interval, and the extract chunk bounds.
_INTERVAL_PARAM = re.compile(
    r"(?<![:\w]):(data_interval_start|data_interval_end|chunk_after|chunk_upto|chunk_cut_\d+)\b"
)


#: Session variables set on each MySQL connection of the stages (not on the extract's raw streaming
#: connection). The dedupe's ROW_NUMBER() derived table and load_target's ordered reads use implicit
#: temporary tables, which the server moves to disk past its default 16 MB: with 256 MB the dedupe of
#: 2M staged rows stays in memory and takes 3.0 s instead of 7.5 s (bench/README.md). A connection's
#: ``session_variables`` extra overrides them, and ``null`` drops one.
SESSION_VARIABLES: dict[str, int | str] = {"tmp_table_size": 256 << 20, "max_heap_table_size": 256 << 20}
_SESSION_VARIABLE = re.compile(r"[a-z_][a-z0-9_]*")


def _encoders() -> dict[Any, Any]:
    try:
        from MySQLdb.converters import conversions
    except ImportError:  # SQLite only: no MySQL driver installed
        return {}
    # Keys that are Python types encode parameters; the integer keys (field types) decode results.
    return {k: v for k, v in conversions.items() if isinstance(k, type)}


_ENCODERS_ONLY = _encoders()


class DatabaseError(RuntimeError):
    """A database failure, with a message safe to log (no credentials)."""


def split_type(column_type: str) -> tuple[str, list[int]]:
    match = _TYPE.fullmatch(column_type.replace(" ", ""))
    if not match:
        raise ValueError(f"bad column type {column_type!r}")
    args = [int(a) for a in (match.group("args") or "").split(",") if a]
    return match.group("base"), args


def sha256_hex(text: str | None) -> str | None:
    """The hex SHA-256 of ``text`` in UTF-8 (None stays None): the key of a text in the translation cache."""
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


class Database(ABC):
    dialect: str
    #: Consecutive extract chunks read by one query (``chunks.window_sql``); 1: one query per chunk.
    chunk_window: int = 1

    def __init__(self, info: ConnectionInfo, *, local_infile: bool = False) -> None:
        self.info = info
        #: MySQL: whether the connection may run ``LOAD DATA LOCAL INFILE`` (only the one that loads
        #: staging asks for it: a server could otherwise ask the client for any local file).
        self.local_infile = local_infile

    # -- SQL building ---------------------------------------------------------------------------
    @abstractmethod
    def quote(self, identifier: str) -> str: ...

    def table(self, name: str) -> str:
        return ".".join(self.quote(p) for p in name.split("."))

    def default_schema(self) -> str:
        """The schema an unqualified table name is in (SQLite ``main``; MySQL the connection's database)."""
        return "main"

    def canonical_table(self, name: str) -> str:
        """One spelling per physical table: lower case (SQLite, and MySQL with ``lower_case_table_names``,
        fold case; treating every server so is the safe side) without the default schema's prefix."""
        schema, _, table = name.lower().rpartition(".")
        return table if schema in ("", self.default_schema().lower()) else f"{schema}.{table}"

    @abstractmethod
    def column_type(self, column_type: str) -> str: ...

    @abstractmethod
    def bind_interval(self, sql: str) -> str:
        """Rewrite ``:data_interval_start``/``:data_interval_end`` into the driver's paramstyle."""

    @abstractmethod
    def placeholder(self) -> str: ...

    @abstractmethod
    def upsert_sql(
        self,
        target: str,
        columns: Sequence[str],
        key: Sequence[str],
        select_sql: str,
        guard: tuple[str, str] | None = None,
    ) -> str:
        """``INSERT ... SELECT`` that updates the row of an existing key; with ``guard`` (order column,
        ``newest``/``oldest``) only where :func:`replaces` says the incoming row wins."""

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

    def collate(self, expr: str) -> str:
        """``expr`` compared in the collation of the tables this pipeline creates (MySQL: a table made
        before the NO PAD collation, or by hand, may use another); as it is where text compares by bytes."""
        return expr

    @abstractmethod
    def sha256_sql(self, expr: str) -> str:
        """SQL for the hex SHA-256 of the text ``expr``: the value :func:`sha256_hex` gives for it."""

    def delete_rows_sql(self, table: str, row_id: str, ids_sql: str) -> str:
        """``DELETE`` the rows of ``table`` (quoted) whose ``row_id`` column the query ``ids_sql`` selects."""
        return f"DELETE FROM {table} WHERE {self.quote(row_id)} IN ({ids_sql})"

    def delete_rows_after(self, table: str, row_id: str, after: int) -> None:
        """Delete the rows of ``table`` whose ``row_id`` is past ``after`` (0: every row); not committed."""
        self.execute(f"DELETE FROM {self.table(table)} WHERE {self.quote(row_id)} > {self.placeholder()}", [after])

    # -- the target table as it exists (target_table.check_target) ----------------------------------
    @abstractmethod
    def primary_key(self, schema: str | None, name: str) -> list[str]:
        """The primary key columns of table ``name`` (in ``schema``; None: the default one), in key order."""

    @abstractmethod
    def padded_key_columns(self, schema: str | None, name: str, columns: Sequence[str]) -> list[tuple[str, str, str]]:
        """(column, type, collation) of the ``columns`` of the key of ``name`` that compare with PAD SPACE."""

    @abstractmethod
    def padded_key_problem(self, table: str, padded: Sequence[tuple[str, str, str]]) -> str:
        """Why the :meth:`padded_key_columns` of ``table`` are refused, and the fix (the end of one line)."""

    def begin(self) -> None:
        """Start a transaction now, so that reads before the next write are part of it."""
        return None  # MySQL: autocommit is off, so the first statement opens one

    # -- execution ------------------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> int: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def column_names(self, table: str) -> list[str]:
        """The table's column names, in order (``DatabaseError`` if it does not exist)."""

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
    def iter_query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None, fetch_rows: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Like :meth:`query` (the driver's types, ``sql`` already bound), but read in batches of
        ``fetch_rows`` rows as the server sends them, so that a long result is never held in memory.
        The connection runs nothing else until the iterator is exhausted or closed."""

    @abstractmethod
    def load_csv(self, table: str, columns: Sequence[str], path: Path) -> int:
        """Bulk-load one decompressed CSV file (see :mod:`csv_codec`) into ``table``; return rows."""

    def load_csv_stream(self, table: str, columns: Sequence[str], source: BinaryIO, scratch: Path) -> int:
        """Bulk-load the CSV records read from ``source`` (such as ``gzip.open(part)``); return rows.

        This default copies the stream to a file in ``scratch`` and loads that; the dialects below load
        from the stream itself, without the decompressed copy on disk.
        """
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            path = Path(tmp) / "part.csv"
            with path.open("wb") as dst:
                shutil.copyfileobj(source, dst, 1 << 20)
            return self.load_csv(table, columns, path)

    def table_exists(self, table: str) -> bool:
        try:
            self.query(f"SELECT 1 FROM {self.table(table)} WHERE 1 = 0")
        except DatabaseError:
            self.rollback()
            return False
        return True

    def __enter__(self) -> Database:
        if not self.connected:  # RunContext.connect() hands out a connected database
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replaces(incoming: str, existing: str, keep: str) -> str:
    """A never-NULL condition: the incoming ``order_by`` value replaces the existing one under ``keep``.

    NULL sorts as the smallest value (as in dedupe's ``ROW_NUMBER``). ``newest``: the incoming row wins
    unless the existing one is newer (a tie goes to the later load); ``oldest``: the incoming row wins
    only if it is strictly older (a tie keeps the existing row).
    """
    if keep == "newest":
        return f"({existing} IS NULL OR ({incoming} IS NOT NULL AND {incoming} >= {existing}))"
    if keep == "oldest":
        return (
            f"(({incoming} IS NULL AND {existing} IS NOT NULL) "
            f"OR ({incoming} IS NOT NULL AND {existing} IS NOT NULL AND {incoming} < {existing}))"
        )
    raise ValueError(f"keep {keep!r} has no order guard")


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

    def primary_key(self, schema: str | None, name: str) -> list[str]:
        prefix = f"{self.quote(schema)}." if schema else ""
        rows = self.query(f"PRAGMA {prefix}table_info({self.quote(name)})")
        return [str(r[1]) for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]

    def padded_key_columns(self, schema: str | None, name: str, columns: Sequence[str]) -> list[tuple[str, str, str]]:
        # Text compares byte by byte unless a column or the key's index says otherwise (RTRIM pads).
        prefix = f"{self.quote(schema)}." if schema else ""
        padded = []
        types = {str(r[1]): str(r[2]) for r in self.query(f"PRAGMA {prefix}table_info({self.quote(name)})")}
        for index in self.query(f"PRAGMA {prefix}index_list({self.quote(name)})"):
            if index[3] != "pk":
                continue
            for info in self.query(f"PRAGMA {prefix}index_xinfo({self.quote(str(index[1]))})"):
                if info[5] and info[2] in columns and str(info[4]).upper() != "BINARY":
                    padded.append((str(info[2]), types.get(str(info[2]), ""), str(info[4])))
        return padded

    def padded_key_problem(self, table: str, padded: Sequence[tuple[str, str, str]]) -> str:
        return (
            "do not compare byte by byte, so distinct keys can be one key; "
            f"nothing was written. Fix: recreate {table} with the key columns in the BINARY collation"
        )

    def sha256_sql(self, expr: str) -> str:
        # SQLite has no SHA-2: registered on the connection (again on each call, which is harmless).
        self.conn.create_function("etl_sha256", 1, sha256_hex, deterministic=True)
        return f"etl_sha256({expr})"

    def upsert_sql(
        self,
        target: str,
        columns: Sequence[str],
        key: Sequence[str],
        select_sql: str,
        guard: tuple[str, str] | None = None,
    ) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        updates = ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}" for c in columns if c not in key)
        conflict = ", ".join(self.quote(k) for k in key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        if updates and guard:
            order = self.quote(guard[0])
            existing = f"{self.quote(target.split('.')[-1])}.{order}"
            action += f" WHERE {replaces(f'excluded.{order}', existing, guard[1])}"
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

    @property
    def connected(self) -> bool:
        return self._conn is not None

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

    def column_names(self, table: str) -> list[str]:
        try:
            cursor = self.conn.execute(f"SELECT * FROM {self.table(table)} LIMIT 0")
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc}") from None
        return [d[0] for d in cursor.description]

    def commit(self) -> None:
        self.conn.commit()

    def begin(self) -> None:
        if not self.conn.in_transaction:  # sqlite3 opens one only at the first write
            self.execute("BEGIN")

    def rollback(self) -> None:
        self.conn.rollback()

    def iter_query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None, fetch_rows: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        try:
            cursor = self.conn.execute(sql, params or ())
            while rows := cursor.fetchmany(fetch_rows):
                yield rows
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc}") from None

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
        with path.open("rb") as handle:
            return self._insert_records(table, columns, handle, str(path))

    def load_csv_stream(self, table: str, columns: Sequence[str], source: BinaryIO, scratch: Path) -> int:
        return self._insert_records(table, columns, source, getattr(source, "name", "<stream>"))

    def _insert_records(self, table: str, columns: Sequence[str], handle: BinaryIO, name: str) -> int:
        cols = ", ".join(self.quote(c) for c in columns)
        sql = f"INSERT INTO {self.table(table)} ({cols}) VALUES ({', '.join('?' * len(columns))})"
        loaded = 0
        batch: list[list[str | None]] = []
        for record in csv_codec.iter_records(handle, expected_fields=len(columns), source=str(name)):
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
    # One read of the source for up to 10 chunks instead of one full scan per chunk (bench/README.md);
    # a kill redoes at most the window it was in. SQLite, the embedded default, keeps one query per
    # chunk, which keeps the query's own row order.
    chunk_window = 10

    def __init__(self, info: ConnectionInfo, *, local_infile: bool = False) -> None:
        super().__init__(info, local_infile=local_infile)
        self._conn: Any = None
        self._collation: str | None = None
        self._database: str | None = None

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

    @property
    def collation(self) -> str:
        """The server's NO PAD binary collation: 'a' and 'A', 'x' and 'x ', '' and ' ' are different keys.

        ``utf8mb4_bin`` pads spaces on MariaDB and MySQL 8, so it is used only where nothing better exists
        (MySQL 5.7, MariaDB before 10.2). Asked of the server once per connection."""
        if self._collation is None:
            version, comment = self.query("SELECT VERSION(), @@version_comment")[0]
            self._collation = server_collation(str(version), str(comment or ""))
        return self._collation

    def table_options(self) -> str:
        return f" DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"

    def collate(self, expr: str) -> str:
        return f"({expr}) COLLATE {self.collation}"

    def default_schema(self) -> str:
        if self._database is None:
            self._database = str(self.info.schema or self.query("SELECT DATABASE()")[0][0] or "")
        return self._database

    def bind_interval(self, sql: str) -> str:
        return _INTERVAL_PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))

    def placeholder(self) -> str:
        return "%s"

    def autoincrement_pk(self) -> str:
        return "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"

    def sha256_sql(self, expr: str) -> str:
        return f"SHA2({expr}, 256)"

    def primary_key(self, schema: str | None, name: str) -> list[str]:
        rows = self.query(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) "
            "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            [schema, name],
        )
        return [_text(r[0]) for r in rows]

    def padded_key_columns(self, schema: str | None, name: str, columns: Sequence[str]) -> list[tuple[str, str, str]]:
        rows = self.query(
            "SELECT COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            [schema, name],
        )
        padded = []
        for column, ctype, collation in rows:
            if _text(column) in columns and collation is not None and not self._no_pad(_text(collation)):
                padded.append((_text(column), _text(ctype), _text(collation)))
        return padded

    def _no_pad(self, collation: str) -> bool:
        lowered = collation.lower()
        if "_nopad_" in lowered or "_0900_" in lowered or lowered == "binary":
            return True
        try:  # MySQL 8 says so itself; MariaDB's COLLATIONS table has no PAD_ATTRIBUTE
            rows = self.query(
                "SELECT PAD_ATTRIBUTE FROM information_schema.COLLATIONS WHERE COLLATION_NAME = %s", [collation]
            )
        except Exception:
            self.rollback()
            return False
        return bool(rows) and str(rows[0][0]).upper() == "NO PAD"

    def padded_key_problem(self, table: str, padded: Sequence[tuple[str, str, str]]) -> str:
        fixes = "; ".join(f"ALTER TABLE {table} MODIFY {c} {t} COLLATE {self.collation} NOT NULL" for c, t, _ in padded)
        return (
            "use a PAD SPACE collation, under which keys that differ in "
            f"trailing spaces are one key; nothing was written. Fix: {fixes}"
        )

    def delete_rows_sql(self, table: str, row_id: str, ids_sql: str) -> str:
        # MySQL cannot select from the table a DELETE ... WHERE IN (subquery) deletes from: a join.
        row = self.quote(row_id)
        return f"DELETE s FROM {table} s JOIN ({ids_sql}) d ON d.{row} = s.{row}"

    def delete_rows_after(self, table: str, row_id: str, after: int) -> None:
        if after == 0:  # every row: DDL, instant at any size (and it commits by itself)
            self.execute(f"TRUNCATE TABLE {self.table(table)}")
        else:
            super().delete_rows_after(table, row_id, after)

    def upsert_sql(
        self,
        target: str,
        columns: Sequence[str],
        key: Sequence[str],
        select_sql: str,
        guard: tuple[str, str] | None = None,
    ) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        values = [c for c in columns if c not in key]
        if guard and values:
            # The server assigns left to right and a later IF sees the new values: the order column
            # goes last, so that every condition compares with the row as it was.
            # Existing values by the table's name: the SELECT's table may have columns of the same name.
            def old(c: str) -> str:
                return f"{self.table(target)}.{self.quote(c)}"

            order = self.quote(guard[0])
            cond = replaces(f"VALUES({order})", old(guard[0]), guard[1])
            values = [c for c in values if c != guard[0]] + [c for c in values if c == guard[0]]
            updates = ", ".join(f"{old(c)} = IF({cond}, VALUES({self.quote(c)}), {old(c)})" for c in values)
        else:
            updates = ", ".join(f"{self.quote(c)} = VALUES({self.quote(c)})" for c in values)
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
            "local_infile": 1 if self.local_infile else 0,
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

    def session_variables(self) -> dict[str, Any]:
        """:data:`SESSION_VARIABLES` with the connection's ``session_variables`` extra over them."""
        settings: dict[str, Any] = dict(SESSION_VARIABLES)
        extra = self.info.extra.get("session_variables") or {}
        if not isinstance(extra, dict):
            raise DatabaseError(
                f"connection {self.info.conn_id!r}: extra session_variables must be an object of name: value"
            )
        for name, value in extra.items():
            if value is None:
                settings.pop(name, None)
            else:
                settings[name] = value
        for name in settings:
            if not _SESSION_VARIABLE.fullmatch(name):
                raise DatabaseError(
                    f"connection {self.info.conn_id!r}: session_variables: {name!r} is not a server variable name"
                )
        return settings

    def connect(self) -> None:
        import MySQLdb

        settings = self.session_variables()
        try:
            self._conn = MySQLdb.connect(**self._connect_kwargs())
        except MySQLdb.Error as exc:
            raise DatabaseError(f"cannot connect to {self.info.describe()}: {exc.args[-1]}") from None
        self._conn.autocommit(False)
        try:
            self._set_session(self._conn, settings)
        except DatabaseError:
            self.close()
            raise

    def _set_session(self, conn: Any, settings: dict[str, Any]) -> None:
        """``SET SESSION`` the variables on ``conn``, or a :class:`DatabaseError` that says how to change them."""
        import MySQLdb

        if not settings:
            return
        try:
            with conn.cursor() as cursor:
                cursor.execute("SET SESSION " + ", ".join(f"{n} = %s" for n in settings), list(settings.values()))
        except MySQLdb.Error as exc:
            raise DatabaseError(
                f"{self.info.conn_id}: cannot set the session variables {sorted(settings)}: {exc.args[-1]} "
                "(change or drop them with the connection extra session_variables)"
            ) from None

    def close(self) -> None:
        self._collation = None
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

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

    def column_names(self, table: str) -> list[str]:
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {self.table(table)} LIMIT 0")
                return [d[0] for d in cursor.description]
        except self._errors() as exc:
            raise DatabaseError(f"{self.info.conn_id}: {exc.args[-1]}") from None

    def iter_query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None, fetch_rows: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        import MySQLdb.cursors

        try:
            # SSCursor: unbuffered (mysql_use_result), with this connection's type conversions.
            with self.conn.cursor(MySQLdb.cursors.SSCursor) as cursor:
                cursor.execute(sql, params)
                while rows := cursor.fetchmany(fetch_rows):
                    yield list(rows)
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

        # A second, raw connection: no conversion of results at all (the driver's encoders only, for the
        # parameters) and bytes for text (use_unicode=False), so values go from the wire to the CSV
        # without a Python object per type.
        # A reader that pauses (a slow object store, a loaded container) is cut off after the server's
        # default 60 s of net_write_timeout: give it 600 s. The session_variables extra still wins.
        settings = {"net_write_timeout": 600, **self.session_variables()}
        try:
            raw_conn = MySQLdb.connect(**self._connect_kwargs(), use_unicode=False, conv=_ENCODERS_ONLY)
        except MySQLdb.Error as exc:
            raise DatabaseError(f"cannot connect to {self.info.describe()}: {exc.args[-1]}") from None
        try:
            self._set_session(raw_conn, settings)
        except DatabaseError:
            raw_conn.close()
            raise
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
        if not self.local_infile:
            raise DatabaseError(f"connection {self.info.conn_id!r}: opened without local_infile; cannot load {table}")
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

    def load_csv_stream(self, table: str, columns: Sequence[str], source: BinaryIO, scratch: Path) -> int:
        """``LOAD DATA LOCAL INFILE`` from a FIFO that a thread fills from ``source``.

        The server parses one part while the thread decompresses it, and no decompressed copy is
        written to disk and read back: loading 2M bench rows took 14.5 to 18.0 s this way against 17.2 to
        19.3 s through a temporary file (bench/README.md). If ``source`` fails part way, its error is
        raised after the load, which may have loaded the records before it: roll back.
        """
        if not hasattr(os, "mkfifo"):
            return super().load_csv_stream(table, columns, source, scratch)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            fifo = Path(tmp) / "part.csv"
            os.mkfifo(fifo, 0o600)
            errors: list[BaseException] = []

            def feed() -> None:
                try:
                    with fifo.open("wb") as dst:
                        shutil.copyfileobj(source, dst, 1 << 20)
                except BrokenPipeError:
                    pass  # the server stopped reading: the load says why
                except BaseException as exc:  # a corrupt stream: raised below, after the load
                    errors.append(exc)

            feeder = threading.Thread(target=feed, name="load-csv-feed", daemon=True)
            feeder.start()
            loaded = 0
            load_error: DatabaseError | None = None
            try:
                loaded = self.load_csv(table, columns, fifo)
            except DatabaseError as exc:
                load_error = exc
            finally:
                if feeder.is_alive():
                    # The load ended before reading everything, or before opening the FIFO: opening
                    # and closing the read end releases a writer blocked in open() or write().
                    with contextlib.suppress(OSError):
                        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
                feeder.join()
        if errors:  # the stream's own failure explains a failed or short load best
            raise errors[0]
        if load_error is not None:
            raise load_error
        return loaded


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def server_collation(version: str, comment: str) -> str:
    """The NO PAD binary utf8mb4 collation of a server, from ``VERSION()`` and ``@@version_comment``."""
    version = version.removeprefix("5.5.5-")  # how MariaDB reports itself to some MySQL clients
    numbers = [int(n) for n in re.findall(r"\d+", version.split("-")[0])[:2]] + [0, 0]
    major, minor = numbers[0], numbers[1]
    if "mariadb" in version.lower() or "mariadb" in comment.lower():
        return "utf8mb4_nopad_bin" if (major, minor) >= (10, 2) else "utf8mb4_bin"
    return "utf8mb4_0900_bin" if major >= 8 else "utf8mb4_bin"


def open_database(info: ConnectionInfo, *, local_infile: bool = False) -> Database:
    """``local_infile``: allow ``LOAD DATA LOCAL INFILE`` on this connection (MySQL; off by default)."""
    if info.conn_type in ("mysql", "mariadb", "aurora_mysql"):
        return MySQLDatabase(info, local_infile=local_infile)
    if info.conn_type == "sqlite":
        return SqliteDatabase(info)
    raise DatabaseError(f"connection {info.conn_id!r}: unsupported conn_type {info.conn_type!r} (mysql or sqlite)")
