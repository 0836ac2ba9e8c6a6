"""gzip backends for the extract parts: zlib level 1 and 6 against ISA-L (``isal.igzip``) level 1.

On the data of ``bench/etl_pipeline.py`` (the same private MariaDB and the same generated source rows,
``--rows`` of them), the CSV is made as the extract makes it: the runtime's ``stream`` in fetch batches,
each encoded by ``csv_codec.encode_rows``, into a temporary file. Then each backend compresses those same
blocks (one ``write`` per fetch batch, as ``_PartWriter`` does) into a byte-counting sink, ``--rounds``
rounds with the order alternating, and the script prints CPU seconds (this process's, the compression
alone), wall seconds and output size per backend, and the ratios to zlib level 1 (the extract's former
writer). Every output is decompressed once and compared with the CSV, byte for byte.

Run: ``uv run --frozen --all-extras python bench/gzip_backends.py --rows 2000000``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "plugins"))

from isal import igzip  # noqa: E402

import etl_pipeline as etl  # noqa: E402

BACKENDS: dict[str, Callable[[Any], Any]] = {
    "zlib L1": lambda raw: gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0),
    "zlib L6": lambda raw: gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0),
    "ISA-L L1": lambda raw: igzip.IGzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0),
}
FETCH_ROWS = 10_000


class CountingSink(io.RawIOBase):
    """A write-only file that counts bytes (and keeps them when asked, for the check)."""

    def __init__(self, keep: bool = False) -> None:
        self.size, self.kept = 0, io.BytesIO() if keep else None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.size += n
        if self.kept is not None:
            self.kept.write(data)
        return n


def make_csv(rows: int, work: Path, dup_every: int) -> tuple[Path, list[int]]:
    """The source rows of etl_pipeline, encoded as the extract encodes them; returns the file and block sizes."""
    from entity_etl.runtime.connections import parse_connection
    from entity_etl.runtime.csv_codec import encode_rows
    from entity_etl.runtime.databases import open_database

    (work / "mariadb").mkdir(parents=True)
    server = etl.start_private_mariadb(work, 1024)
    try:
        etl.generate_source(server, rows, dup_every)
        db = open_database(parse_connection("bench_source", server.conn_json(etl.SOURCE_DB)))
        db.connect()
        _names, batches = db.stream(f"SELECT {', '.join(etl.SOURCE_NAMES)} FROM {etl.SOURCE_TABLE}", {}, FETCH_ROWS)
        path, sizes = work / "extract.csv", []
        with path.open("wb") as f:
            for batch in batches:
                block = encode_rows(batch)
                sizes.append(len(block))
                f.write(block)
        db.close()
    finally:
        server.stop()
    return path, sizes


def blocks(path: Path, sizes: list[int]) -> Iterator[bytes]:
    with path.open("rb") as f:
        for size in sizes:
            yield f.read(size)


def compress(name: str, path: Path, sizes: list[int], keep: bool = False) -> dict[str, Any]:
    sink = CountingSink(keep)
    cpu = wall = 0.0
    gz = BACKENDS[name](sink)
    for block in blocks(path, sizes):  # reading the file is outside the timed part
        c0, w0 = time.process_time(), time.perf_counter()
        gz.write(block)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
    c0, w0 = time.process_time(), time.perf_counter()
    gz.close()
    cpu += time.process_time() - c0
    wall += time.perf_counter() - w0
    return {"cpu_s": cpu, "wall_s": wall, "bytes": sink.size, "data": sink.kept.getvalue() if sink.kept else None}


def verify(path: Path, sizes: list[int]) -> None:
    plain = path.read_bytes()
    for name in BACKENDS:
        out = compress(name, path, sizes, keep=True)["data"]
        if gzip.decompress(out) != plain or zlib.decompress(out, wbits=31) != plain:
            raise SystemExit(f"{name}: the output does not decompress to the CSV")
    print(f"every backend's output decompresses to the {len(plain) / 1e6:,.0f} MB CSV byte for byte", flush=True)


def report(results: dict[str, list[dict[str, Any]]], raw_bytes: int, rows: int) -> None:
    base = min(r["cpu_s"] for r in results["zlib L1"])
    base_size = results["zlib L1"][0]["bytes"]
    print(
        f"\n{rows:,} rows, {raw_bytes / 1e6:,.0f} MB of CSV; best of {len(results['zlib L1'])} rounds (order alternating)"
    )
    print(
        f"{'backend':<9} {'CPU s':>7} {'wall s':>7} {'MB/s CPU':>9} {'out MB':>8} {'ratio':>6} {'CPU / zlib L1':>14} {'size / zlib L1':>15}"
    )
    for name, rs in results.items():
        cpu, wall = min(r["cpu_s"] for r in rs), min(r["wall_s"] for r in rs)
        size = rs[0]["bytes"]
        print(
            f"{name:<9} {cpu:>7.2f} {wall:>7.2f} {raw_bytes / 1e6 / cpu:>9.0f} {size / 1e6:>8.1f} "
            f"{raw_bytes / size:>6.2f} {cpu / base:>13.2f}x {size / base_size:>14.2f}x"
        )
    print("(CPU: this process's time in the compressor only; the CSV was encoded beforehand, as the extract would.)")
    print(
        f"(load average {os.getloadavg()[0]:.2f}: other work on the machine skews the times; the ratios are side by side)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dup-every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-gzip-"))
    try:
        path, sizes = make_csv(args.rows, work, args.dup_every)
        verify(path, sizes)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in BACKENDS}
        order = list(BACKENDS)
        for number in range(args.rounds):
            for name in order if number % 2 == 0 else order[::-1]:
                results[name].append(compress(name, path, sizes))
        report(results, path.stat().st_size, args.rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
