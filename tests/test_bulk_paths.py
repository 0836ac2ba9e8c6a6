"""The bulk-path speed-ups keep their guarantees: encode_rows gives encode_row's exact bytes, and the
MySQL session variables are set, overridable and validated."""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entity_etl.runtime.connections import parse_connection
from entity_etl.runtime.csv_codec import encode_row, encode_rows, iter_records
from entity_etl.runtime.databases import SESSION_VARIABLES, DatabaseError, MySQLDatabase, SqliteDatabase
from entity_etl.runtime.databases.mysql import _release_writer
from support.odd_values import ODD_TEXT
from support.servers import MariaDB

# Values that a binary column could hold: encode_rows' marker bytes, alone and next to quotes.
MARKERS = [b"\xff", b"\xfe", b"\xfd", b'"\xff"', b'\xff","\xff', b"\xfd\n\xfe", b"NULL", b'"', b""]
VALUES = st.one_of(
    st.none(),
    st.binary(max_size=6),
    st.sampled_from(MARKERS),
    st.sampled_from([None if v is None else v.encode() for v in ODD_TEXT]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(VALUES, max_size=5), max_size=12), st.booleans())
def test_encode_rows_gives_the_bytes_of_encode_row(rows: list[list[bytes | None]], as_tuples: bool) -> None:
    batch = [tuple(r) for r in rows] if as_tuples else rows
    expected = b"".join(encode_row(r) for r in batch)
    assert encode_rows(batch) == expected
    assert encode_rows(iter(batch)) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=3, max_size=3), max_size=12), st.permutations([0, 1, 2]), st.integers(1, 3))
def test_encode_rows_in_another_column_order(rows: list[list[bytes | None]], perm: list[int], width: int) -> None:
    order = perm[:width]
    assert encode_rows(rows, order) == b"".join(encode_row([r[i] for i in order]) for r in rows)


def test_encode_rows_of_a_large_batch_round_trips() -> None:
    text = [None if v is None else v.encode() for v in ODD_TEXT]
    rows = [(str(i).encode(), text[i % len(text)], text[(i * 7) % len(text)]) for i in range(5_003)]
    data = encode_rows(rows)
    assert data == b"".join(encode_row(r) for r in rows)
    decoded = list(iter_records(io.BytesIO(data), expected_fields=3))
    assert decoded == [[None if v is None else v.decode() for v in r] for r in rows]


def test_encode_rows_rejects_what_encode_row_rejects() -> None:
    with pytest.raises((TypeError, AttributeError)):
        encode_rows([(b"a", 1)])  # type: ignore[list-item]


def _mysql(extra: dict[str, object]) -> MySQLDatabase:
    return MySQLDatabase(parse_connection("t", json.dumps({"conn_type": "mysql", "host": "h", "extra": extra})))


def test_session_variables_default_override_and_drop() -> None:
    assert _mysql({}).session_variables() == SESSION_VARIABLES
    got = _mysql(
        {"session_variables": {"tmp_table_size": 1 << 30, "max_heap_table_size": None, "sort_buffer_size": 8}}
    ).session_variables()
    assert got == {"tmp_table_size": 1 << 30, "sort_buffer_size": 8}


@pytest.mark.parametrize("bad", [{"tmp_table_size; DROP TABLE x": 1}, ["tmp_table_size"]])
def test_session_variables_are_checked(bad: object) -> None:
    with pytest.raises(DatabaseError, match="session_variables"):
        _mysql({"session_variables": bad}).session_variables()


@pytest.mark.mariadb
def test_session_variables_are_set_on_mariadb(mariadb: MariaDB, mariadb_db: str) -> None:
    info = json.loads(mariadb.conn_json(mariadb_db))
    info["extra"]["session_variables"] = {"max_heap_table_size": 32 << 20}
    with MySQLDatabase(parse_connection("t", json.dumps(info))) as db:
        rows = db.query("SELECT @@SESSION.tmp_table_size, @@SESSION.max_heap_table_size")
    assert [int(v) for v in rows[0]] == [SESSION_VARIABLES["tmp_table_size"], 32 << 20]


def _gzip_of(rows: list[tuple[bytes | None, ...]]) -> bytes:
    return gzip.compress(encode_rows(rows), compresslevel=1)


@pytest.mark.mariadb
def test_load_csv_stream_on_mariadb(mariadb: MariaDB, mariadb_db: str, tmp_path: Path) -> None:
    text = [None if v is None else v.encode() for v in ODD_TEXT]
    rows = [(str(i).encode(), text[i % len(text)]) for i in range(3_000)]
    with MySQLDatabase(parse_connection("t", mariadb.conn_json(mariadb_db)), local_infile=True) as db:
        db.execute("CREATE TABLE s (id INT, txt MEDIUMTEXT) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
        with gzip.open(io.BytesIO(_gzip_of(rows)), "rb") as source:
            assert db.load_csv_stream("s", ["id", "txt"], source, tmp_path) == len(rows)
        got = db.query("SELECT id, txt FROM s ORDER BY id")
        db.rollback()
    assert [(str(i).encode(), None if t is None else t.encode()) for i, t in got] == rows
    assert list(tmp_path.iterdir()) == []  # the FIFO's directory is gone


@pytest.mark.mariadb
def test_load_csv_stream_failures_do_not_hang(mariadb: MariaDB, mariadb_db: str, tmp_path: Path) -> None:
    rows = [(str(i).encode(), b"x" * 50) for i in range(50_000)]
    with MySQLDatabase(parse_connection("t", mariadb.conn_json(mariadb_db)), local_infile=True) as db:
        # The server never opens the FIFO (no such table): the feeder is released, the load's error raised.
        with (
            gzip.open(io.BytesIO(_gzip_of(rows)), "rb") as source,
            pytest.raises(DatabaseError, match="no_such_table"),
        ):
            db.load_csv_stream("no_such_table", ["id", "txt"], source, tmp_path)
        # A truncated gzip part: the stream's own error, not a half-loaded success.
        db.execute("CREATE TABLE s2 (id INT, txt MEDIUMTEXT)")
        data = _gzip_of(rows)
        with gzip.open(io.BytesIO(data[: len(data) // 2]), "rb") as source, pytest.raises(EOFError):
            db.load_csv_stream("s2", ["id", "txt"], source, tmp_path)
        db.rollback()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.timeout(30)
def test_a_feeder_that_opens_the_fifo_late_is_released(tmp_path: Path) -> None:
    # The load failed before the feeder thread reached its open(): as on a loaded machine, the thread
    # opens the FIFO only after the first release. It must still be released, not block for ever.
    fifo = tmp_path / "part.csv"
    os.mkfifo(fifo, 0o600)
    outcome: list[str] = []

    def late_feeder() -> None:
        time.sleep(0.3)
        try:
            with fifo.open("wb") as dst:
                dst.write(b"x" * (1 << 20))
        except BrokenPipeError:
            outcome.append("released")

    feeder = threading.Thread(target=late_feeder, daemon=True)
    feeder.start()
    _release_writer(fifo, feeder)
    assert not feeder.is_alive()
    assert outcome == ["released"]


def test_load_csv_stream_on_sqlite(tmp_path: Path) -> None:
    text = [None if v is None else v.encode() for v in ODD_TEXT]
    rows = [(str(i).encode(), text[i % len(text)]) for i in range(100)]
    info = parse_connection("t", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "t.db")}))
    with SqliteDatabase(info) as db:
        db.execute("CREATE TABLE s (id TEXT, txt TEXT)")
        with gzip.open(io.BytesIO(_gzip_of(rows)), "rb") as source:
            assert db.load_csv_stream("s", ["id", "txt"], source, tmp_path) == len(rows)
        got = db.query("SELECT id, txt FROM s ORDER BY CAST(id AS INTEGER)")
    assert [(i.encode(), None if t is None else t.encode()) for i, t in got] == rows
