"""A ``bench/etl_pipeline.py --variant``: load_staging as it was before 2026-12-03 (each part gunzipped by
zlib into a temporary ``part.csv``, then ``LOAD DATA LOCAL INFILE`` from that file).

``--variant bench/variant_staging_tempfile.py`` runs each stage as it is (A: ISA-L streaming the part into a
FIFO that the server loads from) and with this file (B), side by side, so that A/B of load_staging is what
the streamed load saves. The other stages are the same code on both sides.
"""

from pathlib import Path
from typing import BinaryIO

from entity_etl.runtime import gzip_parts
from entity_etl.runtime.databases import base, mysql

_reader = gzip_parts.part_reader


def _zlib_reader(path: Path, use: str | None = None) -> BinaryIO:
    return _reader(path, "zlib")


gzip_parts.part_reader = _zlib_reader
# The base class's load_csv_stream copies the stream to a file in the scratch folder and loads that.
mysql.MySQLDatabase.load_csv_stream = base.Database.load_csv_stream  # type: ignore[method-assign]
