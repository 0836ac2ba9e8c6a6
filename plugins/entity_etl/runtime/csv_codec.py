"""Gzip CSV that round-trips every value exactly, and that MySQL's ``LOAD DATA`` reads natively.

Format (RFC 4180 with one addition):

* records end with ``\\n``; fields are separated by ``,``;
* every non-NULL value is enclosed in ``"``, with ``"`` inside doubled — so commas, CR, LF, tabs,
  backslashes and any Unicode survive untouched;
* SQL NULL is the bare, unquoted word ``NULL``; the string ``"NULL"`` is quoted and stays a string,
  and the empty string is ``""``.

MySQL/MariaDB read this with ``FIELDS TERMINATED BY ',' ENCLOSED BY '"' ESCAPED BY ''`` (see
:data:`MYSQL_LOAD_OPTIONS`). The reader is hand-written because Python 3.11's ``csv`` module cannot tell
an unquoted ``NULL`` from a quoted one (``QUOTE_NOTNULL`` for readers arrives only in 3.12); it uses
two compiled regular expressions so that the per-character work stays in C.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter, methodcaller
from typing import Any, BinaryIO

NULL = b"NULL"
# Marker bytes for encode_rows: never in valid UTF-8 (and checked by counting, so never trusted blindly).
_NULL_MARK = b"\xff"
_FIELD_MARK = b"\xfe"
_RECORD_MARK = b"\xfd"
_COUNT_NULLS = methodcaller("count", None)
_BLOCK_ROWS = 2_000
MYSQL_LOAD_OPTIONS = (
    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'"
)

_FIELD = rb'(?:"[^"]*(?:""[^"]*)*"|NULL)'
_RECORD = re.compile(rb"%s(?:,%s)*\n" % (_FIELD, _FIELD))
_FIELD_VALUE = re.compile(rb'"([^"]*(?:""[^"]*)*)"|(NULL)')


class CsvFormatError(ValueError):
    """The file is not in this codec's format; the message names the record number."""


def encode_row(values: Sequence[bytes | None]) -> bytes:
    return b",".join([NULL if v is None else b'"' + v.replace(b'"', b'""') + b'"' for v in values]) + b"\n"


def encode_rows(rows: Iterable[Sequence[bytes | None]], order: Sequence[int] | None = None) -> bytes:
    """Encode a batch of rows (their values at ``order``, when given) into one block of records.

    The same bytes as ``encode_row`` row by row, in less CPU: the per-value work (quotes around each
    value, doubled quotes inside, bare NULL) is done by a few ``bytes`` methods over the whole block
    instead of by Python code per value. Those run on the rows joined with marker bytes that valid
    UTF-8 never contains (0xFD, 0xFE, 0xFF). The markers are counted before they are trusted: if a
    value holds one anyway (a binary column), the counts disagree and the rows are encoded one by one.
    """
    batch: Sequence[Sequence[bytes | None]] = rows if isinstance(rows, Sequence) else list(rows)
    if order is not None:
        batch = [[row[order[0]]] for row in batch] if len(order) == 1 else list(map(itemgetter(*order), batch))
    if len(batch) > _BLOCK_ROWS:  # a block that stays in the CPU cache across the passes below
        return b"".join([_encode_block(batch[i : i + _BLOCK_ROWS]) for i in range(0, len(batch), _BLOCK_ROWS)])
    return _encode_block(batch)


def _encode_block(batch: Sequence[Sequence[Any]]) -> bytes:
    if not batch:
        return b""
    widths = list(map(len, batch))
    if min(widths) == 0:
        return b"".join([encode_row(r) for r in batch])
    count = len(batch)
    nulls = sum(map(_COUNT_NULLS, batch))
    join = _FIELD_MARK.join
    try:
        if nulls:
            block = _RECORD_MARK.join(
                [join(r) if None not in r else join([_NULL_MARK if v is None else v for v in r]) for r in batch]
            )
        else:
            block = _RECORD_MARK.join(map(join, batch))
    except TypeError:  # a value that is not bytes: encode_row says which
        return b"".join([encode_row(r) for r in batch])
    if (
        block.count(_FIELD_MARK) != sum(widths) - count
        or block.count(_RECORD_MARK) != count - 1
        or block.count(_NULL_MARK) != nulls
    ):
        return b"".join([encode_row(r) for r in batch])
    if b'"' in block:
        block = block.replace(b'"', b'""')
    block = b'"' + block.replace(_FIELD_MARK, b'","').replace(_RECORD_MARK, b'"\n"') + b'"\n'
    if nulls:
        # Each NULL mark is a whole field, now between its own two quotes.
        block = block.replace(b'"' + _NULL_MARK + b'"', NULL)
    return block


def _decode_record(record: bytes) -> list[str | None]:
    out: list[str | None] = []
    for match in _FIELD_VALUE.finditer(record):
        quoted = match.group(1)
        out.append(None if quoted is None else quoted.replace(b'""', b'"').decode("utf-8"))
    return out


def iter_records(
    stream: BinaryIO,
    *,
    expected_fields: int | None = None,
    source: str = "<stream>",
    block_size: int = 1 << 20,
) -> Iterator[list[str | None]]:
    """Yield each record of ``stream`` as a list of ``str`` (or ``None`` for NULL).

    Raises :class:`CsvFormatError` naming ``source`` and the 1-based record number on malformed input,
    including a truncated last record, or a record with the wrong number of fields.
    """
    buffer = b""
    pos = 0
    number = 0
    eof = False
    while True:
        match = _RECORD.match(buffer, pos)
        # A match that ends exactly at the buffer end may be a record cut in the middle of a quoted
        # field that happens to end in '"\n'; read more before trusting it.
        if match is not None and (match.end() < len(buffer) or eof):
            number += 1
            record = _decode_record(match.group(0))
            if expected_fields is not None and len(record) != expected_fields:
                raise CsvFormatError(f"{source}: record {number}: {len(record)} fields, expected {expected_fields}")
            yield record
            pos = match.end()
            continue
        if eof:
            if pos < len(buffer):
                raise CsvFormatError(
                    f"{source}: record {number + 1}: malformed or truncated CSV near {buffer[pos : pos + 60]!r}"
                )
            return
        chunk = stream.read(block_size)
        if not chunk:
            eof = True
        buffer = buffer[pos:] + chunk
        pos = 0
