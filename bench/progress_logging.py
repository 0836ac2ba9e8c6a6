"""What a stage's progress logging costs: the reporter's own calls, and a real extract with it on and off.

1. THE CALLS: ``Progress.chunk_done`` timed on its own, a call that logs nothing (inside the 10 s) and
   a call that writes a line through the ``etlctl`` formatter to a file (the task log stands in), so the
   cost at any chunk count can be worked out.
2. THE STAGE: the extract stage (``run_stage``, in this process) of a SQLite source of ``--rows`` rows,
   ``--chunk-rows`` rows a chunk, passes alternating between progress ON (a line for every chunk,
   ``PROGRESS_EVERY_S = 0``: more lines than the 10 s default ever writes) and OFF (``Progress.plan``
   and ``chunk_done`` replaced by no-ops: no progress code at all). Each pass is a new run (a fresh
   extract); the stage's other log lines (start, metrics, table) go to the same file in both.

Prints the per-call costs, every pass's wall time, the best and the median of each mode, and
(median ON - median OFF) / median OFF. The machine's noise is printed with it: the spread of the OFF
passes.

Run: ``uv run --frozen --all-extras python bench/progress_logging.py [--rows 2000000] [--chunk-rows 20000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from entity_etl.runtime import progress  # noqa: E402

ENTITY = """\
entity: bench
schedule: "@daily"
start_date: 2026-01-01
source: {{conn_id: bench_src, extract_sql: bench/extract.sql, chunk_rows: {chunk_rows}, fetch_rows: 10000, chunk_key: id}}
staging: {{table: stg_bench}}
target: {{conn_id: bench_tgt, table: bench_company}}
columns:
  - {{name: id, type: string(20)}}
  - {{name: name, type: string(200)}}
  - {{name: city, type: string(80)}}
  - {{name: amount, type: "decimal(18,2)"}}
  - {{name: changed_at, type: datetime}}
dedupe: {{key: [id], keep: newest, order_by: changed_at}}
"""
SQL = (
    "SELECT id, name, city, amount, changed_at FROM src "
    "WHERE changed_at >= :data_interval_start AND changed_at < :data_interval_end"
)


def make_source(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE src (id TEXT PRIMARY KEY, name TEXT, city TEXT, amount TEXT, changed_at TEXT)")

        def gen() -> Iterator[tuple[str, str, str, str, str]]:
            for i in range(rows):
                yield (
                    f"K{i:09d}",
                    f'Firma {i} GmbH & Co. KG, "Süd"',
                    ("Köln", "München", "東京", "São Paulo")[i % 4],
                    f"{i % 100000}.{i % 100:02d}",
                    f"2026-01-01 {i % 24:02d}:{i % 60:02d}:{i % 59:02d}",
                )

        conn.executemany("INSERT INTO src VALUES (?, ?, ?, ?, ?)", gen())


def time_calls(n: int, log_file: Path) -> tuple[float, float]:
    """Microseconds per ``chunk_done`` call: one that writes nothing, one that writes a line."""
    logger = logging.getLogger("bench.progress")
    logger.propagate = False
    handler = logging.FileHandler(log_file)
    handler.setFormatter(progress.IsoFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    quiet = progress.Progress("bench: extract", every_s=3600.0, logger=logger)
    quiet.plan(n + 1)
    t0 = time.perf_counter()
    for _ in range(n):
        quiet.chunk_done(10_000, 1_000_000)
    silent_us = (time.perf_counter() - t0) / n * 1e6
    loud = progress.Progress("bench: extract", every_s=0.0, logger=logger)
    loud.plan(n + 1)
    t0 = time.perf_counter()
    for _ in range(n):
        loud.chunk_done(10_000, 1_000_000)
    line_us = (time.perf_counter() - t0) / n * 1e6
    handler.close()
    return silent_us, line_us


def extract_pass(include: Path, store: Path, run: int) -> tuple[float, float, int]:
    """One extract of a new run: its wall time, this process's CPU time in it, and its rows."""
    from entity_etl.runtime.context import build_context
    from entity_etl.runtime.stages import run_stage

    ctx = build_context(
        entity="bench",
        run_id=f"bench-{run}",
        interval_start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        interval_end=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        object_store_url=str(store),
        entities_dir=include / "entities",
        sql_dir=include / "sql",
    )
    t0, c0 = time.perf_counter(), time.process_time()
    stats = run_stage(ctx, "extract")
    return time.perf_counter() - t0, time.process_time() - c0, stats.rows_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-progress-") as tmp_name:
        tmp = Path(tmp_name)
        silent_us, line_us = time_calls(args.calls, tmp / "calls.log")
        print(f"chunk_done: {silent_us:.2f} us a call that logs nothing, {line_us:.1f} us a call that writes a line")

        include = tmp / "include"
        (include / "entities").mkdir(parents=True)
        (include / "sql" / "bench").mkdir(parents=True)
        (include / "entities" / "bench.yaml").write_text(ENTITY.format(chunk_rows=args.chunk_rows))
        (include / "sql" / "bench" / "extract.sql").write_text(SQL)
        t0 = time.perf_counter()
        make_source(tmp / "src.db", args.rows)
        print(f"source: {args.rows:,} rows in SQLite ({time.perf_counter() - t0:.1f} s)", flush=True)
        os.environ.update(
            {
                "AIRFLOW_CONN_BENCH_SRC": json.dumps({"conn_type": "sqlite", "host": str(tmp / "src.db")}),
                "AIRFLOW_CONN_BENCH_TGT": json.dumps({"conn_type": "sqlite", "host": str(tmp / "tgt.db")}),
                "ETL_STATE_DB": str(tmp / "state.db"),
            }
        )
        handler = logging.FileHandler(tmp / "task.log")
        handler.setFormatter(progress.IsoFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().handlers[:] = [handler]
        logging.getLogger().setLevel(logging.INFO)

        real_plan, real_done = progress.Progress.plan, progress.Progress.chunk_done
        walls: dict[str, list[float]] = {"on": [], "off": []}
        cpus: dict[str, list[float]] = {"on": [], "off": []}
        lines_by_mode: dict[str, int] = {}
        wall, _, _ = extract_pass(include, tmp / "objects-0", 0)  # unmeasured: imports, caches, the page cache
        print(f"pass 0 (warm-up, not counted): {wall:.2f} s", flush=True)
        run = 0
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                if mode == "on":
                    progress.PROGRESS_EVERY_S = 0.0
                    progress.Progress.plan, progress.Progress.chunk_done = real_plan, real_done  # type: ignore[method-assign]
                else:
                    progress.Progress.plan = lambda self, *a, **k: None  # type: ignore[method-assign]
                    progress.Progress.chunk_done = lambda self, *a, **k: None  # type: ignore[method-assign]
                run += 1
                lines_before = sum(1 for _ in (tmp / "task.log").open()) if (tmp / "task.log").exists() else 0
                wall, cpu, rows = extract_pass(include, tmp / f"objects-{run}", run)
                lines = sum(1 for _ in (tmp / "task.log").open()) - lines_before
                walls[mode].append(wall)
                cpus[mode].append(cpu)
                lines_by_mode[mode] = lines
                print(
                    f"pass {run}: progress {mode:3}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {rows:,} rows, {lines} log lines",
                    flush=True,
                )
        progress.Progress.plan, progress.Progress.chunk_done = real_plan, real_done  # type: ignore[method-assign]

    chunks = lines_by_mode["on"] - lines_by_mode["off"] - 1  # a line per chunk, and the plan
    print(f"\nextract of {args.rows:,} rows, {chunks} chunks (a line each with progress on):")
    for what, figures in (("wall", walls), ("CPU", cpus)):
        on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
        best_on, best_off = min(figures["on"]), min(figures["off"])
        print(
            f"  {what:4}: off median {off:.2f} s (best {best_off:.2f}, spread {max(figures['off']) - best_off:.2f}); "
            f"on median {on:.2f} s (best {best_on:.2f}, spread {max(figures['on']) - best_on:.2f}); "
            f"on vs off: median {(on - off) / off * 100:+.2f}%, best {(best_on - best_off) / best_off * 100:+.2f}%"
        )
    off = statistics.median(walls["off"])
    own = chunks * line_us / 1e6
    print(
        f"  the reporter's own calls at {chunks} lines: {own * 1e3:.2f} ms = {own / off * 100:.4f}% of the stage's wall"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
