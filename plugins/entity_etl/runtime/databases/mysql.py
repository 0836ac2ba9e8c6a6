"""MySQL/MariaDB (Amazon RDS) through ``mysqlclient``: an unbuffered server-side cursor for the extract,
raw bytes (no per-value type conversion), ``LOAD DATA LOCAL INFILE`` for staging."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from entity_etl.runtime import csv_codec
from entity_etl.runtime.connections import ConnectionInfo
from entity_etl.runtime.databases.base import _INTERVAL_PARAM, Database, DatabaseError, replaces, split_type

#: Session variables set on each MySQL connection of the stages (not on the extract's raw streaming
#: connection). The dedupe's ROW_NUMBER() derived table and load_target's ordered reads use implicit
#: temporary tables, which the server moves to disk past its default 16 MB: with 256 MB the dedupe of
#: a benchmark-sized staging table stays in memory, less than half the time (figures in bench/README.md). A connection's
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
        written to disk and read back, which is faster than a temporary file (figures in bench/README.md).
        If ``source`` fails part way, its error is
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
                _release_writer(fifo, feeder)
        if errors:  # the stream's own failure explains a failed or short load best
            raise errors[0]
        if load_error is not None:
            raise load_error
        return loaded


def _release_writer(fifo: Path, feeder: threading.Thread) -> None:
    """Wait for the thread that fills ``fifo``, releasing it if the load stopped reading.

    The load may end before reading everything, or before opening the FIFO at all. Opening and
    closing the read end releases a writer blocked in ``open()`` (its ``write()`` then fails with
    ``EPIPE``) or in ``write()``. Repeat until the thread ends: on a loaded machine the thread may
    reach its ``open()`` only after a first release, and would then block there for ever.
    """
    while feeder.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        feeder.join(timeout=0.05)


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
