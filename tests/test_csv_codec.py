"""The gzip CSV codec: exact round trip of any value, clear errors on malformed input.

The round trips encode with ``encode_rows`` (what the extract writes) and check it against ``encode_row``."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entity_etl.runtime import csv_codec
from entity_etl.runtime.csv_codec import CsvFormatError, encode_row, encode_rows, iter_records
from support.odd_values import ODD_TEXT


def _roundtrip(rows: list[list[str | None]], block_size: int = 1 << 20) -> list[list[str | None]]:
    encoded = [[None if v is None else v.encode() for v in row] for row in rows]
    data = encode_rows(encoded)
    assert data == b"".join(encode_row(row) for row in encoded)
    return list(iter_records(io.BytesIO(data), expected_fields=len(rows[0]) if rows else None, block_size=block_size))


def test_odd_values_round_trip() -> None:
    rows = [[str(i), v, v] for i, v in enumerate(ODD_TEXT)]
    assert _roundtrip(rows) == rows


def test_null_and_empty_and_the_word_null_stay_distinct() -> None:
    assert encode_row([None, b"", b"NULL"]) == b'NULL,"","NULL"\n'
    assert encode_rows([[None, b"", b"NULL"], [b'a"b', None, b""]]) == b'NULL,"","NULL"\n"a""b",NULL,""\n'
    assert _roundtrip([[None, "", "NULL"]]) == [[None, "", "NULL"]]


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64])
def test_records_split_across_read_blocks(block_size: int) -> None:
    rows = [[v, str(i)] for i, v in enumerate(ODD_TEXT)]
    assert _roundtrip(rows, block_size=block_size) == rows


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.text()), min_size=3, max_size=3), min_size=1, max_size=20))
def test_any_unicode_round_trips(rows: list[list[str | None]]) -> None:
    # st.text() includes lone surrogates, which are not UTF-8 encodable and cannot come from a DB.
    rows = [
        [v if v is None else v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") for v in r] for r in rows
    ]
    assert _roundtrip(rows, block_size=5) == rows


def test_encode_rows_edge_batches() -> None:
    assert encode_rows([]) == b""
    assert encode_rows(iter([[b"x"]])) == b'"x"\n'  # any iterable of rows
    assert encode_rows([[b"a", b"b", b"c"]], order=[2, 0]) == b'"c","a"\n'
    assert encode_rows([[b"a", b"b"]], order=[1]) == b'"b"\n'
    assert encode_rows([[], [b"a"]]) == b'\n"a"\n'  # a row of no values is an empty record


@pytest.mark.parametrize("value", [b"\xff", b"\xfe", b"\xfd", b'"\xff"', b"a\xfe\xfdb"])
def test_encode_rows_with_its_marker_bytes_in_a_value_falls_back_to_encode_row(value: bytes) -> None:
    rows = [[value, None], [b"plain", value]]
    assert encode_rows(rows) == encode_row(rows[0]) + encode_row(rows[1])


def test_encode_rows_encodes_text_rows_as_one_block_not_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is the point of encode_rows: text rows (NULLs, quotes, one or more columns) never
    fall back to encode_row, whose output it must equal."""
    batches = [
        [[b"a", None, b'q"'], [None, b"", b"x"]],
        [[b"a"], [None], [b'"']],
        [[b"a", b"b"], [b"c", b"d"]],
    ]
    expected = [b"".join(encode_row(r) for r in batch) for batch in batches]

    def per_row(values: object) -> bytes:
        raise AssertionError(f"encode_rows fell back to encode_row for {values!r}")

    monkeypatch.setattr(csv_codec, "encode_row", per_row)
    assert [encode_rows(batch) for batch in batches] == expected


def test_encode_rows_of_a_non_bytes_value_fails_as_encode_row_does() -> None:
    with pytest.raises(AttributeError):
        encode_rows([[b"a", 1]])  # type: ignore[list-item]


def test_encode_rows_across_its_internal_blocks_round_trips() -> None:
    rows = [[str(i), None if i % 3 else ODD_TEXT[i % len(ODD_TEXT)]] for i in range(4_500)]  # > 2 blocks
    assert _roundtrip(rows) == rows


def test_truncated_file_names_the_record() -> None:
    data = encode_row([b"a", b"b"]) + b'"c","unterminated'
    with pytest.raises(CsvFormatError, match=r"part-7\.csv: record 2: malformed or truncated CSV"):
        list(iter_records(io.BytesIO(data), source="part-7.csv"))


def test_wrong_field_count_names_the_record() -> None:
    data = encode_row([b"a", b"b"]) + encode_row([b"a", b"b", b"c"])
    with pytest.raises(CsvFormatError, match=r"x\.csv: record 2: 3 fields, expected 2"):
        list(iter_records(io.BytesIO(data), expected_fields=2, source="x.csv"))


def test_unquoted_text_is_rejected() -> None:
    with pytest.raises(CsvFormatError, match=r"^<stream>: record 1: "):  # no source given: <stream>
        list(iter_records(io.BytesIO(b"plain,text\n")))


def test_records_are_yielded_as_they_are_read_not_after_the_whole_stream() -> None:
    data = b"".join(encode_row([str(i).encode(), b"x" * 50]) for i in range(1_000))
    stream = io.BytesIO(data)
    records = iter_records(stream, expected_fields=2, block_size=256)
    assert next(records) == ["0", "x" * 50]
    assert stream.tell() <= 512  # two blocks at most: the record, and the next one to trust its end
    assert sum(1 for _ in records) == 999


def test_the_default_block_size_reads_the_stream_in_large_blocks() -> None:
    data = b"".join(encode_row([str(i).encode(), b"y" * 20]) for i in range(100_000))  # about 3 MB
    stream = io.BytesIO(data)
    records = iter_records(stream)
    assert next(records) == ["0", "y" * 20]
    assert stream.tell() == 1 << 20  # one 1 MiB read: not one read per byte, nor the whole file


def test_a_malformed_record_error_shows_the_bytes_where_it_stops() -> None:
    data = encode_row([b"a"]) + b"bad" + b"z" * 100
    with pytest.raises(CsvFormatError) as raised:
        list(iter_records(io.BytesIO(data), source="f.csv"))
    assert str(raised.value) == f"f.csv: record 2: malformed or truncated CSV near {(b'bad' + b'z' * 57)!r}"
