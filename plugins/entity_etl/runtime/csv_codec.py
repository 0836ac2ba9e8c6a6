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
from typing import BinaryIO

NULL = b"NULL"
MYSQL_LOAD_OPTIONS = (
    "CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'"
)

_FIELD = rb'(?:"[^"]*(?:""[^"]*)*"|NULL)'
_RECORD = re.compile(rb"%s(?:,%s)*\n" % (_FIELD, _FIELD))
_FIELD_VALUE = re.compile(rb'"([^"]*(?:""[^"]*)*)"|(NULL)')


class CsvFormatError(ValueError):
    """The file is not in this codec's format; the message names the record number."""


def encode_value(value: bytes | None) -> bytes:
    if value is None:
        return NULL
    return b'"' + value.replace(b'"', b'""') + b'"'


def encode_row(values: Sequence[bytes | None]) -> bytes:
    return b",".join([NULL if v is None else b'"' + v.replace(b'"', b'""') + b'"' for v in values]) + b"\n"


def encode_rows(rows: Iterable[Sequence[bytes | None]]) -> bytes:
    return b"".join([encode_row(r) for r in rows])


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
