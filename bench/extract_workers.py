"""The extract at 1, 2 and 4 worker processes (``ETL_EXTRACT_WORKERS``), side by side, on bench-etl's data.

On the server and source table of ``bench/etl_pipeline.py`` (a private MariaDB, the company-like rows
with odd characters), the entity gets ``chunk_key: company_ref`` and ``split_points`` that cut the key
space into ``--partitions`` equal ranges. Each pass is one ``etlctl run-stage --stage extract`` process
of a new run (no resume) with ``ETL_EXTRACT_WORKERS`` set; the rounds alternate the order (1, 2, 4 then
4, 2, 1). Right before each round the server alone does ``SELECT ... INTO OUTFILE`` (the limit).

Per pass: wall time, rows/s, the CPU of the stage and its workers (``RUSAGE_CHILDREN`` of a wrapper process), the largest
peak RSS of any one process. Every pass's parts, decompressed in manifest order, must hash the same as
the first's (the same rows in the same parts whatever the worker count) and hold every row.

Run: ``uv run --frozen --all-extras python bench/extract_workers.py --rows 2000000``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import etl_pipeline as pipeline


def add_split_points(entities: Path, rows: int, partitions: int) -> list[str]:
    """Cut ``company_ref`` (``DE-`` and ten digits of the row number) into ``partitions`` equal ranges."""
    points = [f"DE-{rows * k // partitions:010d}" for k in range(1, partitions)]
    path = entities / f"{pipeline.ENTITY}.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "  conn_id: bench_source\n",
        f"  conn_id: bench_source\n  chunk_key: company_ref\n  split_points: {json.dumps(points)}\n",
    )
    path.write_text(text, encoding="utf-8")
    return points


# Runs the stage and reports the rusage of its whole tree (the stage process and the workers it waited
# for): CPU summed, peak RSS the largest of any one process.
RUSAGE_WRAPPER = """\
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-4000:],
               "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}, f)
"""


def server_cpu_s(server: pipeline.MariaDB) -> float:
    """The server process's CPU so far (user + system, from ``/proc``)."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_extract(
    server: pipeline.MariaDB, env: dict[str, str], work: Path, run_id: str, workers: int
) -> dict[str, Any]:
    pipeline.run_stage("cleanup", env, work, run_id)  # the extract's predecessor, not measured
    cmd = [sys.executable, "-m", "entity_etl.cli", "run-stage", "--entity", pipeline.ENTITY, "--stage", "extract"]
    cmd += ["--run-id", run_id, "--interval-start", pipeline.INTERVAL_START.isoformat()]
    cmd += ["--interval-end", pipeline.INTERVAL_END.isoformat()]
    out = work / "extract-rusage.json"
    server_before = server_cpu_s(server)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", RUSAGE_WRAPPER, str(out), *cmd],
        env={**env, "ETL_EXTRACT_WORKERS": str(workers)},
        check=True,
    )
    wall = time.perf_counter() - t0
    server_s = server_cpu_s(server) - server_before
    usage = json.loads(out.read_text(encoding="utf-8"))
    if usage["rc"] != 0:
        sys.stderr.write(usage["stderr"])
        raise SystemExit(f"extract with {workers} worker(s) failed (exit {usage['rc']})")
    if os.environ.get("BENCH_SHOW_LOG"):
        sys.stderr.write(usage["stderr"])
    stats = json.loads(usage["stdout"].strip().splitlines()[-1])
    return {
        "workers": workers,
        "wall_s": wall,
        "cpu_s": usage["cpu_s"],
        "server_cpu_s": server_s,
        "peak_rss_mb": usage["maxrss_kb"] / 1024,
        **stats,
    }


def parts_digest(work: Path, stats: dict[str, Any]) -> tuple[int, str]:
    manifest = json.loads(Path(stats["details"]["manifest"].removeprefix("file://")).read_bytes())
    digest = hashlib.sha256()
    for part in manifest["parts"]:
        digest.update(gzip.decompress((work / "objects" / part["key"]).read_bytes()))
    return int(manifest["rows"]), digest.hexdigest()


def run(args: argparse.Namespace, work: Path) -> None:
    (work / "mariadb").mkdir(parents=True)
    (work / "scratch").mkdir()
    print(f"=== extract workers, {args.rows:,} rows, {args.partitions} partitions; {os.cpu_count()} CPUs here, "
          f"load average {os.getloadavg()[0]:.2f} ===", flush=True)  # fmt: skip
    server = pipeline.start_private_mariadb(work, args.buffer_pool_mb)
    try:
        gen = pipeline.generate_source(server, args.rows, args.dup_every)
        print(f"source generated in {gen:.1f} s", flush=True)
        entities, sql = pipeline.write_entity(work / "include")
        points = add_split_points(entities, args.rows, args.partitions)
        print(f"split_points: {points}")
        env = pipeline.stage_env(server, work, entities, sql)
        limit = pipeline.Limit(server, work, entities, sql)
        passes: list[dict[str, Any]] = []
        reference: tuple[int, str] | None = None
        orders = [args.workers, list(reversed(args.workers))]
        for round_no in range(args.rounds):
            limit.extract()
            limit_s = limit.times["extract"]
            print(f"round {round_no + 1}: limit (SELECT ... INTO OUTFILE) {limit_s:.2f} s", flush=True)
            for workers in orders[round_no % 2]:
                result = timed_extract(server, env, work, f"bench_w{workers}_r{round_no}", workers)
                found = parts_digest(work, result)
                reference = reference or found
                if found != reference or found[0] < args.rows:
                    raise SystemExit(f"workers={workers}: parts differ from the first pass: {found} != {reference}")
                result["limit_s"] = limit_s
                passes.append(result)
                print(
                    f"  workers {workers}: {result['wall_s']:6.2f} s  {args.rows / result['wall_s']:>10,.0f} rows/s  "
                    f"CPU {result['cpu_s']:6.2f} s  server CPU {result['server_cpu_s']:6.2f} s  peak RSS/process {result['peak_rss_mb']:6.1f} MB  "
                    f"ours/limit {result['wall_s'] / limit_s:4.2f}",
                    flush=True,
                )
        print(f"every pass: {reference[0] if reference else 0:,} rows, parts identical (sha256 of the CSV)")
    finally:
        server.stop()
    report(passes, args.workers)


def report(passes: list[dict[str, Any]], counts: list[int]) -> None:
    best = {w: min(p["wall_s"] for p in passes if p["workers"] == w) for w in counts}
    median = {w: statistics.median(p["wall_s"] for p in passes if p["workers"] == w) for w in counts}
    cpu = {w: min(p["cpu_s"] for p in passes if p["workers"] == w) for w in counts}
    server = {w: min(p["server_cpu_s"] for p in passes if p["workers"] == w) for w in counts}
    limit = min(p["limit_s"] for p in passes)
    base = best[counts[0]]
    print(
        f"\n{'workers':>7} {'best wall s':>11} {'speed-up':>9} {'median s':>8} {'speed-up':>9} {'CPU s':>7} {'server CPU s':>12} {'ours/limit':>10}"
    )
    for w in counts:
        print(
            f"{w:>7} {best[w]:>11.2f} {base / best[w]:>8.2f}x {median[w]:>8.2f} {median[counts[0]] / median[w]:>8.2f}x "
            f"{cpu[w]:>7.2f} {server[w]:>12.2f} "
            f"{best[w] / limit:>10.2f}"
        )
    print(f"(limit, best of the rounds: {limit:.2f} s; CPU: the stage and its workers; server CPU: mariadbd's)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=4, help="key ranges (split_points + 1; default 4)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare (default 1,2,4)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating the order (default 2)")
    parser.add_argument("--dup-every", type=int, default=20)
    parser.add_argument("--buffer-pool-mb", type=int, default=2048)
    parser.add_argument("--work-dir", type=Path, help="keep the server and files here (default: a temp dir)")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-extract-workers-"))
    try:
        run(args, work / "run")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
