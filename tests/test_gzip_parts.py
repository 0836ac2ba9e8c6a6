"""Extract parts written through ISA-L (``gzip_parts``) read back byte-exactly with Python's ``gzip``."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entity_etl.runtime import gzip_parts
from entity_etl.runtime.csv_codec import encode_rows, iter_records
from entity_etl.runtime.stages.extract import _PartWriter
from support.odd_values import ODD_TEXT


def _compress(data: bytes, use: str, pieces: int = 1) -> bytes:
    raw = io.BytesIO()
    gz = gzip_parts.part_writer(raw, use)
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        gz.write(data[start : start + step])
    gz.close()
    return raw.getvalue()


def _odd_rows() -> list[list[bytes | None]]:
    return [[str(i).encode(), None if v is None else v.encode(), b"x" * (i % 5)] for i, v in enumerate(ODD_TEXT)]


def test_isal_is_the_backend() -> None:
    """isal is a runtime dependency (pyproject.toml): the extract uses it, not the zlib fallback."""
    assert gzip_parts.backend() == "isal"


@pytest.mark.parametrize("use", ["isal", "zlib"])
def test_odd_values_through_a_part_writer_read_back_exactly(
    tmp_path: Path, use: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gzip_parts, "backend", lambda: use)
    rows = _odd_rows() * 50
    writer = _PartWriter(tmp_path / "part-00000.csv.gz", None)
    for start in range(0, len(rows), 97):
        writer.write(rows[start : start + 97])
    assert writer.close() == len(rows)
    data = (tmp_path / "part-00000.csv.gz").read_bytes()
    assert data[:3] == b"\x1f\x8b\x08" and data[4:8] == b"\0\0\0\0"  # gzip, deflate, mtime 0
    with gzip.open(tmp_path / "part-00000.csv.gz", "rb") as f:
        plain = f.read()
    assert plain == encode_rows(rows)
    decoded = list(iter_records(io.BytesIO(plain), expected_fields=3))
    assert decoded == [[None if v is None else v.decode() for v in row] for row in rows]


def test_isal_and_zlib_parts_decompress_to_the_same_bytes() -> None:
    data = encode_rows(_odd_rows() * 2000) + os.urandom(300_000)  # compressible text and incompressible bytes
    isal_gz, zlib_gz = _compress(data, "isal", pieces=37), _compress(data, "zlib", pieces=37)
    assert gzip.decompress(isal_gz) == data == gzip.decompress(zlib_gz)
    assert zlib.decompress(isal_gz, wbits=31) == data  # a raw zlib gzip reader, as a server-side loader would use


def test_multi_member_part_reads_as_the_concatenation() -> None:
    """A resumed or appended part made of several members (either backend) reads as one stream."""
    first, second, third = encode_rows(_odd_rows()), b"", encode_rows(_odd_rows()[::-1])
    joined = _compress(first, "isal") + _compress(second, "isal") + _compress(third, "zlib")
    assert gzip.decompress(joined) == first + second + third
    with gzip.open(io.BytesIO(joined), "rb") as f:
        assert f.read() == first + second + third


def test_truncated_isal_part_is_an_error_not_a_short_read() -> None:
    data = _compress(encode_rows(_odd_rows() * 100), "isal")
    with pytest.raises(EOFError), gzip.open(io.BytesIO(data[:-9]), "rb") as f:
        f.read()


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="'brotli'"):
        gzip_parts.part_writer(io.BytesIO(), "brotli")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.binary(max_size=40)), min_size=3, max_size=3), max_size=40))
def test_any_bytes_round_trip_through_isal(rows: list[list[bytes | None]]) -> None:
    data = encode_rows(rows)
    assert gzip.decompress(_compress(data, "isal", pieces=3)) == data


@pytest.mark.parametrize("reader", ["isal", "zlib"])
@pytest.mark.parametrize("writer", ["isal", "zlib"])
def test_part_reader_reads_either_backends_part_exactly(tmp_path: Path, reader: str, writer: str) -> None:
    """load_staging reads parts through ``part_reader``: any part, written by either backend (or by an
    older version, zlib), reads back as the same bytes, in pieces."""
    data = encode_rows(_odd_rows() * 3000) + os.urandom(100_000)
    path = tmp_path / "part.csv.gz"
    path.write_bytes(_compress(data, writer, pieces=11))
    with gzip_parts.part_reader(path, reader) as f:
        pieces = iter(lambda: f.read(65_536), b"")
        assert b"".join(pieces) == data


@pytest.mark.parametrize("reader", ["isal", "zlib"])
@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda gz: b"not gzip", id="not-gzip"),
        pytest.param(lambda gz: gz[: len(gz) // 2], id="truncated"),
        pytest.param(lambda gz: gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:], id="bad-crc"),
        pytest.param(lambda gz: gz[:200] + b"\xff" * 64 + gz[264:], id="bad-deflate"),
    ],
)
def test_a_damaged_part_raises_one_of_the_read_errors(tmp_path: Path, reader: str, damage: object) -> None:
    """Never a short read that looks like the end of the part: load_staging turns these into one line."""
    path = tmp_path / "part.csv.gz"
    path.write_bytes(damage(_compress(encode_rows(_odd_rows() * 500), "isal")))  # type: ignore[operator]
    with pytest.raises(gzip_parts.READ_ERRORS), gzip_parts.part_reader(path, reader) as f:
        while f.read(65_536):
            pass
