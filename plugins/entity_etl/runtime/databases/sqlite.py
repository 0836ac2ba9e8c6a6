"""SQLite, the embedded default: batched inserts in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from entity_etl.runtime import csv_codec
from entity_etl.runtime.connections import ConnectionInfo
from entity_etl.runtime.databases.base import Database, DatabaseError, replaces, sha256_hex, split_type


class SqliteDatabase(Database):
    dialect = "sqlite"
    insert_batch_rows = 5_000

    def __init__(self, info: ConnectionInfo, *, read_only: bool = False) -> None:
        super().__init__(info)
        #: A source connection: opened read-only, so a missing file is an error instead of a new empty
        #: database (a target or a state file may be created, a source never is).
        self.read_only = read_only
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
        if self.read_only and not Path(self.path).is_file():
            raise DatabaseError(f"cannot open source {self.info.describe()}: no such file {self.path}")
        try:
            if self.read_only:
                uri = Path(self.path).absolute().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(uri, timeout=60, isolation_level="DEFERRED", uri=True)
            else:
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
