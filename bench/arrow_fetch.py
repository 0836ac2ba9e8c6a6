"""A native fetch for the extract, judged by measurement: connectorx into Arrow, pyarrow's CSV writer.

Issue 14 asks whether moving the extract's per-row work into a native library ("reading through a
Rust/C driver into Arrow buffers") wins while every odd value still round-trips exactly. This script
measures one candidate side by side with the extract's own path, on the data of ``bench/etl_pipeline.py``
(its private MariaDB, its generated rows, plus one row per odd value of the tests in every text column,
as ``bench/peers.py`` adds them):

* **ours**: the runtime's ``Database.stream`` (mysqlclient, unbuffered, bytes, no conversions) in fetch
  batches, each encoded by ``csv_codec.encode_rows``, into the extract's part writer (``gzip_parts``);
* **arrow**: ``connectorx.read_sql(..., return_type="arrow_stream")`` in batches of the same size,
  written by ``pyarrow.csv.write_csv`` with ``quoting_style="all_valid"``, ``null_string="NULL"``,
  ``eol="\\n"`` and no header (the codec's format), into the same part writer. connectorx reads
  ``DECIMAL`` as ``decimal128(38, 10)``, so ``share_capital`` is cast back to its declared
  ``decimal128(18, 2)`` (a safe cast: it raises if a digit would be lost).

Each path runs in its own child process, ``--rounds`` rounds with the order alternating; the script prints
wall, CPU (user + system, the child's threads included) and peak RSS per path, and the ratios. Both
outputs are decompressed and compared byte for byte; where they differ it names the column and shows
values. connectorx and pyarrow are not dependencies of the project: run it with them added for the run,
``uv run --frozen --all-extras --with connectorx==0.4.6 --with pyarrow==26.0.1 python bench/arrow_fetch.py
--rows 2000000``. pyarrow 26 is the first whose ``WriteOptions`` has ``null_string`` and ``eol``; 25.0.0,
the version Airflow 3.3.1's constraints pin, has neither.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "plugins"))

import etl_pipeline as etl  # noqa: E402
import peers  # noqa: E402

FETCH_ROWS = 10_000
PATHS = ("ours", "arrow")


def query() -> str:
    return f"SELECT {', '.join(etl.SOURCE_NAMES)} FROM {etl.SOURCE_DB}.{etl.SOURCE_TABLE}"


def child_ours(conn_json: str, out: Path) -> None:
    from entity_etl.runtime import csv_codec, gzip_parts
    from entity_etl.runtime.connections import parse_connection
    from entity_etl.runtime.databases import open_database

    db = open_database(parse_connection("bench_source", conn_json))
    db.connect()
    _names, batches = db.stream(query(), {}, FETCH_ROWS)
    with out.open("wb") as raw:
        gz = gzip_parts.part_writer(raw)
        for batch in batches:
            gz.write(csv_codec.encode_rows(batch))
        gz.close()
    db.close()


def child_arrow(port: int, out: Path) -> None:
    import connectorx as cx  # type: ignore[import-not-found]
    import pyarrow as pa  # type: ignore[import-not-found]
    import pyarrow.csv as pc  # type: ignore[import-not-found]

    from entity_etl.runtime import gzip_parts

    url = f"mysql://{peers.USER}:{peers.PASSWORD}@127.0.0.1:{port}/{etl.SOURCE_DB}"
    options = pc.WriteOptions(include_header=False, quoting_style="all_valid", null_string="NULL", eol="\n")
    decimal = etl.SOURCE_NAMES.index("share_capital")
    with out.open("wb") as raw:
        gz = gzip_parts.part_writer(raw)
        for batch in cx.read_sql(url, query(), return_type="arrow_stream", batch_size=FETCH_ROWS):
            column = batch.column(decimal).cast(pa.decimal128(18, 2), safe=True)
            batch = batch.set_column(decimal, batch.schema.field(decimal).name, column)
            pc.write_csv(batch, gz, options)
        gz.close()


def compare(ours: Path, arrow: Path) -> bool:
    from entity_etl.runtime import csv_codec

    with gzip.open(ours) as a, gzip.open(arrow) as b:
        left, right = a.read(), b.read()
    if left == right:
        print(f"outputs identical byte for byte ({len(left) / 1e6:,.0f} MB of CSV)")
        return True
    differing: dict[str, list[tuple[Any, Any]]] = {}
    records = 0
    with gzip.open(ours) as a, gzip.open(arrow) as b:
        for x, y in zip(csv_codec.iter_records(a), csv_codec.iter_records(b), strict=False):
            records += 1
            for name, p, q in zip(etl.SOURCE_NAMES, x, y, strict=False):
                if p != q:
                    differing.setdefault(name, []).append((p, q))
    print(f"outputs DIFFER ({len(left):,} against {len(right):,} bytes, {records:,} records compared)")
    for name, pairs in differing.items():
        print(f"  {name}: {len(pairs):,} values differ, e.g. (ours, arrow) {pairs[:3]}")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dup-every", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--conn-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "ours":
        child_ours(args.conn_json, args.out)
        return 0
    if args.child == "arrow":
        child_arrow(args.port, args.out)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-arrow-fetch-")).resolve()
    (work / "mariadb").mkdir()
    server = etl.start_private_mariadb(work, 2048)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in PATHS}
    try:
        etl.generate_source(server, args.rows, args.dup_every)
        odd = peers.add_odd_rows(server, args.rows)
        peers.prepare_server(server)
        print(
            f"{args.rows:,} generated rows and {odd} rows of the tests' odd values; load average {os.getloadavg()[0]:.2f}"
        )
        for number in range(args.rounds):
            for name in PATHS if number % 2 == 0 else PATHS[::-1]:
                out = work / f"{name}.csv.gz"
                cmd = [sys.executable, __file__, "--child", name, "--port", str(server.port), "--out", str(out)]
                cmd += ["--conn-json", server.conn_json(etl.SOURCE_DB)]
                figures = peers.measured(cmd, dict(os.environ), work / f"{name}.log")
                figures["bytes"] = out.stat().st_size
                results[name].append(figures)
                print(
                    f"  round {number + 1} {name:<5} wall {figures['wall_s']:6.2f} s  CPU {figures['cpu_s']:6.2f} s  "
                    f"peak RSS {figures['peak_rss_mb']:6.1f} MB  {figures['bytes'] / 1e6:6.1f} MB gzip",
                    flush=True,
                )
        exact = compare(work / "ours.csv.gz", work / "arrow.csv.gz")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = {k: min(r[k] for r in results["ours"]) for k in ("wall_s", "cpu_s")}
    print(
        f"\n{args.rows + odd:,} rows, best of {args.rounds} rounds (order alternating); each path is a whole child process"
    )
    print(f"{'path':<6} {'wall s':>7} {'CPU s':>7} {'peak RSS MB':>12} {'wall / ours':>12} {'CPU / ours':>11}")
    for name, rs in results.items():
        wall, cpu, rss = min(r["wall_s"] for r in rs), min(r["cpu_s"] for r in rs), max(r["peak_rss_mb"] for r in rs)
        print(
            f"{name:<6} {wall:>7.2f} {cpu:>7.2f} {rss:>12.1f} {wall / base['wall_s']:>11.2f}x {cpu / base['cpu_s']:>10.2f}x"
        )
    print(
        f"(load average {os.getloadavg()[0]:.2f}: the absolute times depend on the machine's other work; the ratios are side by side)"
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
