"""The interface every dialect implements, the SQL helpers the stages share, and the target guard.

Dialect differences live on the classes (:mod:`.sqlite`, :mod:`.mysql`), never in the stages.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from entity_etl.runtime.connections import ConnectionInfo

_TYPE = re.compile(r"^(?P<base>[a-z]+)(\((?P<args>[\d,\s]+)\))?$")
# The named parameters the runtime binds into entity SQL: the data interval, and the extract chunk bounds.
_INTERVAL_PARAM = re.compile(
    r"(?<![:\w]):(data_interval_start|data_interval_end|chunk_after|chunk_upto|chunk_cut_\d+)\b"
)


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
