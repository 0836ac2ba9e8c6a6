"""Fault injection at benchmark size: SIGKILL every stage at seeded points, resume, and check the target.

``tests/test_resume.py`` does this on a few hundred rows in ``make test``; this script does it at the
size of a benchmark (default 2M rows, ``--rows 50000000`` for the full-size run), on a private MariaDB
(``etl_pipeline.py``'s server, source generator and entity), in three passes:

1. a clean pass (run id ``clean``): every stage once, timed;
2. the target dropped, a faulted pass (run id ``faulted``): for each of extract, load_staging, dedupe
   and load_target, ``etlctl run-stage`` is started with ``ETL_FAILPOINTS=<point>=kill@<n>`` (the
   process SIGKILLs itself at the n-th hit of that point, as a killed container would die), again and
   again for the stage's planned kills, then once without a fail point; each rerun continues from the
   run store's checkpoints;
3. the check: the faulted target must equal the newest source row per key after the sanitizers (row
   count and a checksum of every value), exactly as the clean one does.

It prints every kill (point, hit, exit status, wall), the chunks each rerun found done, and the work
redone: the faulted pass's total wall against the clean pass's. Seeded (``--seed``): the same plan each
time. Not a test; figures go to ``bench/README.md``.

Run: ``uv run --frozen --all-extras python bench/fault_injection.py --rows 2000000 --kills 12``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl_pipeline import (
    ENTITY,
    INTERVAL_END,
    INTERVAL_START,
    TARGET_DB,
    TARGET_TABLE,
    check_target,
    expected_checksum,
    generate_source,
    stage_env,
    start_private_mariadb,
    write_entity,
)

STAGES = ["extract", "load_staging", "dedupe", "load_target"]
#: The fail points of each stage, and whether a hit comes after that unit's work is durable (so a kill
#: at the n-th hit leaves n units done) or before it (n - 1 done).
POINTS: dict[str, list[tuple[str, bool]]] = {
    "extract": [("extract.batch_written", False), ("extract.part_uploaded", True)],
    "load_staging": [("load_staging.part_loaded", False), ("load_staging.part_committed", True)],
    "dedupe": [("dedupe.deleted", False)],
    "load_target": [("load_target.chunk_written", False), ("load_target.chunk_committed", True)],
}


@dataclass
class Attempt:
    stage: str
    failpoint: str
    exit: int
    wall_s: float
    stats: dict[str, Any] | None


def etlctl(stage: str, env: dict[str, str], run_id: str, failpoint: str = "") -> Attempt:
    """One ``etlctl run-stage`` process; its exit status (negative: killed by that signal) and statistics."""
    cmd = [
        sys.executable,
        "-m",
        "entity_etl.cli",
        "run-stage",
        "--entity",
        ENTITY,
        "--stage",
        stage,
        "--run-id",
        run_id,
        "--interval-start",
        INTERVAL_START.isoformat(),
        "--interval-end",
        INTERVAL_END.isoformat(),
    ]
    t0 = time.perf_counter()
    # The run's lease owner, as Airflow passes it: a rerun of the run takes over the killed process's lease.
    run_env = {**env, "ETL_FAILPOINTS": failpoint, "ETL_LEASE_OWNER": f"etl_{ENTITY}/{run_id}"}
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False, timeout=7200)
    wall = time.perf_counter() - t0
    stats = None
    if proc.returncode == 0:
        stats = json.loads(proc.stdout.strip().splitlines()[-1])
    elif proc.returncode != -signal.SIGKILL:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"{stage} ({failpoint or 'no fail point'}) failed with exit {proc.returncode}")
    return Attempt(stage, failpoint, proc.returncode, wall, stats)


def units(rows: int, chunk_rows: int, target_chunk_rows: int, fetch_rows: int) -> dict[str, int]:
    """About how many hits each fail point gets in a whole run (keyset chunks are near ``chunk_rows``)."""
    parts = max(1, math.ceil(rows / chunk_rows))
    return {
        "extract.batch_written": max(1, math.ceil(rows / fetch_rows)),
        "extract.part_uploaded": parts,
        "load_staging.part_loaded": parts,
        "load_staging.part_committed": parts,
        "dedupe.deleted": 1,
        "load_target.chunk_written": max(1, math.ceil(rows / target_chunk_rows)),
        "load_target.chunk_committed": max(1, math.ceil(rows / target_chunk_rows)),
    }


def plan_kills(rng: random.Random, kills: int, sizes: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """Seeded kill points, at least one per stage, each at a hit the stage still has ahead of it.

    A kill at the n-th hit of a point leaves about n (or n - 1) units done; the next process counts its
    hits from 1 again, over what is left. So each stage's kills are drawn over what remains after the
    earlier ones, and a stage takes no more kills than it has units of work (dedupe: one).
    """
    capacity = {"extract": sizes["extract.part_uploaded"], "load_staging": sizes["load_staging.part_committed"]}
    capacity |= {"dedupe": 1, "load_target": sizes["load_target.chunk_committed"]}
    per_stage = dict.fromkeys(STAGES, 1)
    while sum(per_stage.values()) < kills:
        open_stages = [s for s in STAGES if per_stage[s] < capacity[s]]
        if not open_stages:
            break
        per_stage[rng.choice(open_stages)] += 1
    plan: dict[str, list[tuple[str, int]]] = {}
    for stage in STAGES:
        done_fraction = 0.0
        plan[stage] = []
        for _ in range(per_stage[stage]):
            point, after = rng.choice(POINTS[stage])
            remaining = max(1, int(sizes[point] * (1 - done_fraction)))
            nth = rng.randint(1, max(1, remaining - 1)) if after else rng.randint(1, remaining)
            plan[stage].append((point, nth))
            done_fraction = min(0.95, done_fraction + (nth - (0 if after else 1)) / max(1, sizes[point]))
    return plan


def set_chunking(entities: Path, chunk_rows: int, target_chunk_rows: int) -> None:
    """Smaller chunks than the defaults, so that a 2M-row run has enough of them to kill between."""
    path = entities / f"{ENTITY}.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("  conn_id: bench_source\n", f"  conn_id: bench_source\n  chunk_rows: {chunk_rows}\n", 1)
    text = text.replace("  conn_id: bench_target\n", f"  conn_id: bench_target\n  chunk_rows: {target_chunk_rows}\n")
    path.write_text(text, encoding="utf-8")


class RunLease:
    """The DAG run's lease, as its ``acquire_lease``/``release_lease`` tasks hold it around the stages."""

    def __init__(self, env: dict[str, str], run_id: str) -> None:
        from entity_etl.runtime.lease import SqliteLeaseStore

        self.store = SqliteLeaseStore(Path(env["ETL_STATE_DB"]))
        self.owner = f"etl_{ENTITY}/{run_id}"

    def __enter__(self) -> RunLease:
        self.store.acquire(ENTITY, self.owner, 900)
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.release(ENTITY, self.owner)


def drop_target(server: Any) -> None:
    conn = server.connect()
    conn.cursor().execute(f"DROP TABLE IF EXISTS {TARGET_DB}.{TARGET_TABLE}")
    conn.commit()
    conn.close()


def resumed(stats: dict[str, Any] | None) -> int:
    details = (stats or {}).get("details") or {}
    return int(details.get("resumed_chunks") or details.get("resumed_parts") or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--kills", type=int, default=12, help="kills in total, at least one per stage")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="source.chunk_rows of the bench entity")
    parser.add_argument("--target-chunk-rows", type=int, default=250_000, help="target.chunk_rows")
    parser.add_argument("--dup-every", type=int, default=20)
    parser.add_argument("--buffer-pool-mb", type=int, default=2048)
    parser.add_argument("--work-dir", type=Path, help="keep the server and files here (default: a temp dir)")
    args = parser.parse_args(argv)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("mariadb", "scratch"):
        (work / sub).mkdir(exist_ok=True)
    rng = random.Random(args.seed)
    sizes = units(args.rows, args.chunk_rows, args.target_chunk_rows, 10_000)
    plan = plan_kills(rng, args.kills, sizes)
    print(
        f"=== fault injection: {args.rows:,} rows, seed {args.seed}, chunk_rows {args.chunk_rows:,}, "
        f"target.chunk_rows {args.target_chunk_rows:,}, load average {os.getloadavg()[0]:.2f} ===",
        flush=True,
    )
    server = start_private_mariadb(work, args.buffer_pool_mb)
    try:
        generated = generate_source(server, args.rows, args.dup_every)
        print(f"source generated in {generated:.1f} s", flush=True)
        entities, sql = write_entity(work / "include")
        set_chunking(entities, args.chunk_rows, args.target_chunk_rows)
        env = stage_env(server, work, entities, sql)
        expected = expected_checksum(server)

        print("\nclean pass (run id clean):", flush=True)
        clean: dict[str, float] = {}
        with RunLease(env, "clean"):
            for stage in ["cleanup", *STAGES]:
                attempt = etlctl(stage, env, "clean")
                clean[stage] = attempt.wall_s
                print(f"  {stage:<13} {attempt.wall_s:8.2f} s", flush=True)
        check_target(server, TARGET_TABLE, expected, "clean pass")
        drop_target(server)

        print("\nfaulted pass (run id faulted):", flush=True)
        attempts: list[Attempt] = []
        kills = not_reached = 0
        with RunLease(env, "faulted"):
            attempts.append(etlctl("cleanup", env, "faulted"))
            for stage in STAGES:
                for point, nth in plan[stage]:
                    attempt = etlctl(stage, env, "faulted", f"{point}=kill@{nth}")
                    attempts.append(attempt)
                    if attempt.exit == -signal.SIGKILL:
                        kills += 1
                        print(
                            f"  {stage:<13} kill at {point}@{nth:<4} SIGKILLed after {attempt.wall_s:7.2f} s",
                            flush=True,
                        )
                    else:  # the stage finished before that hit: nothing to resume
                        not_reached += 1
                        print(f"  {stage:<13} kill at {point}@{nth:<4} not reached: the stage finished", flush=True)
                final = etlctl(stage, env, "faulted")
                attempts.append(final)
                print(
                    f"  {stage:<13} rerun finished in {final.wall_s:7.2f} s, {resumed(final.stats)} chunk(s) found done",
                    flush=True,
                )
        check_target(server, TARGET_TABLE, expected, "faulted pass")
    finally:
        server.stop()

    print(f"\n{'stage':<13} {'clean s':>9} {'faulted s':>10} {'processes':>10} {'faulted/clean':>14}")
    for stage in ["cleanup", *STAGES]:
        mine = [a for a in attempts if a.stage == stage]
        spent = sum(a.wall_s for a in mine)
        print(f"{stage:<13} {clean[stage]:9.2f} {spent:10.2f} {len(mine):10d} {spent / clean[stage]:13.2f}x")
    clean_total = sum(clean.values())
    faulted_total = sum(a.wall_s for a in attempts)
    print(
        f"{'total':<13} {clean_total:9.2f} {faulted_total:10.2f} {len(attempts):10d} {faulted_total / clean_total:13.2f}x\n"
        f"kills: {kills} SIGKILLs ({not_reached} planned points not reached): "
        f"{', '.join(f'{s} {len(plan[s])}' for s in STAGES)}\n"
        f"target after the kills: exact ({expected[0]:,} rows, checksum {expected[1]}), as after the clean pass",
        flush=True,
    )
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
