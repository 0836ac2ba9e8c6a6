"""Chaos on MariaDB: SIGKILLed stages, a crashed and restarted server, and lease takeovers, at seeded points.

``fault_injection.py`` kills the stages of one run; this script mixes three kinds of fault over the
same pipeline (``etl_pipeline.py``'s private server, source generator and entity; ``fault_injection.py``'s
fail points and chunking), default 1M rows:

- **kill**: ``etlctl run-stage`` with ``ETL_FAILPOINTS=<point>=kill@<n>``: the stage SIGKILLs itself at
  the n-th hit of that point, as a killed container dies; the run's next process resumes from the run
  store's checkpoints.
- **restart**: the stage is started without a fail point and, at a seeded fraction of that stage's clean
  wall time, ``mariadbd`` is SIGKILLed (a crash: no shutdown, InnoDB recovers from its redo log) and
  started again on the same datadir; the stage fails on its lost connection, and its rerun resumes.
- **takeover**: the stage SIGKILLs itself at a fail point and its run is abandoned, holding the entity
  lease (``ETL_LEASE_TTL_S``, short here). A second run (a new run id, so a new lease owner
  ``etl_<entity>/<run id>``) is refused while that lease is live, takes it once it has expired, and
  runs every stage from the start. The first run's retry of its stage is then refused (it no longer
  holds the lease) and must leave the target as it was.

Then the check: the target must hold exactly the newest source row per key after the sanitizers (row
count and a checksum of every value, ``etl_pipeline.check_target``), as after a clean pass. It prints
every fault, the faults injected per kind, the wall time against the clean pass, and the verdict.
Seeded (``--seed``): the same plan each time. Not a test; figures go to ``bench/README.md``.

Run: ``make bench-chaos`` or ``uv run --frozen --all-extras python bench/chaos.py --rows 1000000``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_pipeline import (
    ENTITY,
    INTERVAL_END,
    INTERVAL_START,
    TARGET_DB,
    TARGET_NAMES,
    TARGET_TABLE,
    MariaDB,
    check_target,
    checksum_sql,
    expected_checksum,
    generate_source,
    set_buffer_pool,
    stage_env,
    start_private_mariadb,
    write_entity,
)
from fault_injection import POINTS, STAGES, RunLease, drop_target, resumed, set_chunking, units

KINDS = ("kill", "restart", "takeover")


@dataclass
class Fault:
    kind: str
    stage: str
    point: str = ""  # kill and takeover: the fail point and the hit that SIGKILLs the stage
    nth: int = 0
    delay: float = 0.0  # restart: the fraction of the stage's clean wall time before the server is killed

    def describe(self) -> str:
        return f"{self.point}@{self.nth}" if self.point else f"server kill at {self.delay:.0%} of the clean wall"


@dataclass
class Tally:
    """What was injected, and what each fault found."""

    injected: Counter[str] = field(default_factory=Counter)
    missed: Counter[str] = field(default_factory=Counter)  # the stage had finished first
    processes: int = 0
    lease_waits: list[float] = field(default_factory=list)


# -- the plan --------------------------------------------------------------------------------------
def plan_runs(rng: random.Random, faults: int, takeovers: int, sizes: dict[str, int]) -> list[list[Fault]]:
    """Seeded faults, in stage order within each run; every run but the last ends with a takeover.

    At least one kill and one restart, and (with enough faults) one fault in every stage besides the
    takeovers. A kill's hit is drawn over what its stage still has ahead of it after the run's earlier
    kills of that stage, so that it is reached.
    """
    others = max(2, faults - takeovers)
    kinds = ["kill", "restart"] + [rng.choice(["kill", "restart"]) for _ in range(others - 2)]
    rng.shuffle(kinds)
    stages = list(range(len(STAGES)))[:others] + [rng.randrange(len(STAGES)) for _ in range(others - len(STAGES))]
    ends = [*sorted(rng.randrange(len(STAGES)) for _ in range(takeovers)), len(STAGES) - 1]
    runs: list[list[Fault]] = [[] for _ in ends]
    for kind, stage_index in zip(kinds, stages, strict=True):
        number = rng.choice([n for n, last in enumerate(ends) if last >= stage_index])
        runs[number].append(Fault(kind, STAGES[stage_index]))
    for number, stage_index in enumerate(ends[:-1]):
        runs[number].append(Fault("takeover", STAGES[stage_index]))
    for run in runs:
        run.sort(key=lambda f: (STAGES.index(f.stage), f.kind == "takeover"))
        done: dict[str, float] = {}
        for fault in run:
            if fault.kind == "restart":
                fault.delay = rng.uniform(0.1, 0.6)
            else:
                fault.point, fault.nth, done[fault.stage] = pick_hit(rng, fault.stage, sizes, done.get(fault.stage, 0))
    return runs


def pick_hit(rng: random.Random, stage: str, sizes: dict[str, int], done: float) -> tuple[str, int, float]:
    """A fail point of ``stage`` and a hit within the work left (``done``: the fraction already done)."""
    point, after = rng.choice(POINTS[stage])
    remaining = max(1, int(sizes[point] * (1 - done)))
    nth = rng.randint(1, max(1, remaining - 1)) if after else rng.randint(1, remaining)
    return point, nth, min(0.95, done + (nth - (0 if after else 1)) / max(1, sizes[point]))


# -- processes -------------------------------------------------------------------------------------
def launch(stage: str, env: dict[str, str], run_id: str, failpoint: str = "") -> subprocess.Popen[str]:
    """``etlctl run-stage`` for ``run_id``, whose lease owner is ``etl_<entity>/<run id>`` (as Airflow's)."""
    cmd = [sys.executable, "-m", "entity_etl.cli", "run-stage", "--entity", ENTITY, "--stage", stage]
    cmd += ["--run-id", run_id, "--interval-start", INTERVAL_START.isoformat()]
    cmd += ["--interval-end", INTERVAL_END.isoformat()]
    run_env = {**env, "ETL_FAILPOINTS": failpoint, "ETL_LEASE_OWNER": owner(run_id)}
    return subprocess.Popen(cmd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def owner(run_id: str) -> str:
    return f"etl_{ENTITY}/{run_id}"


def finish(proc: subprocess.Popen[str], timeout: float = 3600) -> tuple[int, dict[str, Any] | None, str]:
    """Exit status (negative: killed by that signal), the statistics of a success, the last stderr line."""
    out, err = proc.communicate(timeout=timeout)
    stats = json.loads(out.strip().splitlines()[-1]) if proc.returncode == 0 else None
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return proc.returncode, stats, lines[-1] if lines else ""


def crash_and_restart(server: MariaDB, buffer_pool_mb: int) -> float:
    """SIGKILL ``mariadbd`` (no shutdown) and start it again on the same datadir; seconds until it answers."""
    t0 = time.perf_counter()
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    server.start()
    set_buffer_pool(server, buffer_pool_mb)
    return time.perf_counter() - t0


def target_checksum(server: MariaDB) -> tuple[int, int]:
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(f"SHOW TABLES FROM {TARGET_DB} LIKE '{TARGET_TABLE}'")
    if not cur.fetchone():
        conn.close()
        return (0, 0)
    cur.execute(checksum_sql(TARGET_NAMES, f"{TARGET_DB}.{TARGET_TABLE}"))
    rows, crc = cur.fetchone()
    conn.close()
    return int(rows), int(crc or 0)


# -- one run ---------------------------------------------------------------------------------------
class Chaos:
    def __init__(self, server: MariaDB, env: dict[str, str], args: argparse.Namespace, clean: dict[str, float]):
        from entity_etl.runtime.lease import SqliteLeaseStore

        self.server, self.env, self.args, self.clean = server, env, args, clean
        self.leases = SqliteLeaseStore(Path(env["ETL_STATE_DB"]))
        self.tally = Tally()

    def say(self, text: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def run(self, run_id: str, faults: list[Fault]) -> bool:
        """Every stage of ``run_id`` with its faults; False once a takeover abandoned the run."""
        for stage in ["cleanup", *STAGES]:
            for fault in (f for f in faults if f.stage == stage):
                self.take_lease(run_id)
                if fault.kind == "restart":
                    self.restart_during(stage, run_id, fault)
                    continue
                self.kill(stage, run_id, fault)
                if fault.kind == "takeover":  # the run is abandoned, dead or not, holding its lease
                    return False
            self.take_lease(run_id)
            code, stats, last = finish(launch(stage, self.env, run_id))
            self.tally.processes += 1
            if code != 0:
                raise SystemExit(f"{run_id}: {stage} failed with exit {code} after its faults: {last}")
            self.say(f"{run_id:<11} {stage:<13} finished, {resumed(stats)} chunk(s) found done")
        self.leases.release(ENTITY, owner(run_id))
        return True

    def take_lease(self, run_id: str) -> None:
        """As the run's ``acquire_lease`` task holds it (re-taken before each stage: the TTL is short)."""
        self.leases.acquire(ENTITY, owner(run_id), float(self.env["ETL_LEASE_TTL_S"]))

    def kill(self, stage: str, run_id: str, fault: Fault) -> None:
        """The stage SIGKILLs itself at the fault's hit (a takeover's kill is counted as the takeover)."""
        code, _stats, last = finish(launch(stage, self.env, run_id, f"{fault.point}=kill@{fault.nth}"))
        self.tally.processes += 1
        if code == -signal.SIGKILL:
            self.tally.injected["kill"] += fault.kind == "kill"
            self.say(f"{run_id:<11} {stage:<13} {fault.kind}: SIGKILLed at {fault.describe()}")
            return
        if code != 0:
            raise SystemExit(f"{run_id}: {stage} ({fault.describe()}) failed with exit {code}: {last}")
        self.tally.missed[fault.kind] += 1
        self.say(f"{run_id:<11} {stage:<13} {fault.kind}: {fault.describe()} not reached, the stage finished")

    def restart_during(self, stage: str, run_id: str, fault: Fault) -> None:
        proc = launch(stage, self.env, run_id)
        time.sleep(fault.delay * self.clean[stage])
        finished_first = proc.poll() is not None
        took = crash_and_restart(self.server, self.args.buffer_pool_mb)
        code, _stats, last = finish(proc, timeout=600)
        self.tally.processes += 1
        self.tally.injected["restart"] += 1
        if finished_first and code == 0:
            self.tally.missed["restart"] += 1
            self.say(f"{run_id:<11} {stage:<13} restart: server killed after the stage finished; up in {took:.1f} s")
            return
        self.say(f"{run_id:<11} {stage:<13} restart: {fault.describe()}, up in {took:.1f} s; stage exit {code}: {last}")

    def take_over(self, old_run: str, new_run: str, stage: str) -> None:
        """``new_run`` waits out ``old_run``'s lease; then ``old_run``'s retry is refused, target untouched."""
        from entity_etl.runtime.lease import LeaseHeldError

        t0 = time.time()
        holder = self.leases.holder(ENTITY)
        refused = 0
        while True:
            try:
                self.leases.acquire(ENTITY, owner(new_run), float(self.env["ETL_LEASE_TTL_S"]))
                break
            except LeaseHeldError:
                refused += 1
                time.sleep(0.25)
        taken = time.time()
        if holder is None or holder.owner != owner(old_run) or taken < holder.expires_at or not refused:
            raise SystemExit(f"takeover: expected {owner(old_run)}'s live lease to refuse {new_run}; holder {holder}")
        self.tally.lease_waits.append(taken - t0)
        self.tally.injected["takeover"] += 1
        before = target_checksum(self.server)
        code, _stats, last = finish(launch(stage, self.env, old_run))
        self.tally.processes += 1
        if code == 0 or "does not hold the entity lease" not in last or target_checksum(self.server) != before:
            raise SystemExit(f"takeover: {old_run}'s retry of {stage} was not refused cleanly (exit {code}): {last}")
        self.say(
            f"{new_run:<11} took the lease {taken - t0:.1f} s after {old_run} died ({refused} refusals while live); "
            f"{old_run}'s retry of {stage} refused: ...{last[-110:]}"
        )


# -- main ------------------------------------------------------------------------------------------
def clean_pass(server: MariaDB, env: dict[str, str], expected: tuple[int, int]) -> dict[str, float]:
    """Every stage once without faults (run id ``clean``): the wall times the restarts are timed against."""
    walls: dict[str, float] = {}
    with RunLease(env, "clean"):
        for stage in ["cleanup", *STAGES]:
            t0 = time.perf_counter()
            code, _stats, last = finish(launch(stage, env, "clean"))
            walls[stage] = time.perf_counter() - t0
            if code != 0:
                raise SystemExit(f"clean pass: {stage} failed with exit {code}: {last}")
            print(f"  {stage:<13} {walls[stage]:8.2f} s", flush=True)
    check_target(server, TARGET_TABLE, expected, "clean pass")
    return walls


def chaos_pass(chaos: Chaos, runs: list[list[Fault]]) -> None:
    for number, faults in enumerate(runs):
        run_id = f"chaos-{number + 1}"
        print(f"  {run_id}: {', '.join(f'{f.kind} in {f.stage}' for f in faults) or 'no faults'}", flush=True)
        if number:
            chaos.take_over(f"chaos-{number}", run_id, runs[number - 1][-1].stage)
        if chaos.run(run_id, faults) != (number == len(runs) - 1):
            raise SystemExit(f"{run_id}: the plan's takeover was {'not ' if number < len(runs) - 1 else ''}reached")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--faults", type=int, default=12, help="faults in total (default 12)")
    parser.add_argument("--takeovers", type=int, default=2, help="of which lease takeovers (default 2)")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--lease-ttl-s", type=float, default=6.0, help="ETL_LEASE_TTL_S of every run (default 6)")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="source.chunk_rows of the bench entity")
    parser.add_argument("--target-chunk-rows", type=int, default=100_000, help="target.chunk_rows")
    parser.add_argument("--dup-every", type=int, default=20)
    parser.add_argument("--buffer-pool-mb", type=int, default=2048)
    parser.add_argument("--work-dir", type=Path, help="keep the server and files here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.faults < args.takeovers + 2:
        parser.error("--faults must leave room for at least one kill and one restart besides the takeovers")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    for sub in ("mariadb", "scratch"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    sizes = units(args.rows, args.chunk_rows, args.target_chunk_rows, 10_000)
    runs = plan_runs(random.Random(args.seed), args.faults, args.takeovers, sizes)
    print(
        f"=== chaos: {args.rows:,} rows, seed {args.seed}, {args.faults} faults ({args.takeovers} takeovers), "
        f"lease TTL {args.lease_ttl_s:g} s, chunk_rows {args.chunk_rows:,}, load average {os.getloadavg()[0]:.2f} ===",
        flush=True,
    )
    server = start_private_mariadb(work, args.buffer_pool_mb)
    try:
        print(f"source generated in {generate_source(server, args.rows, args.dup_every):.1f} s", flush=True)
        entities, sql = write_entity(work / "include")
        set_chunking(entities, args.chunk_rows, args.target_chunk_rows)
        env = {**stage_env(server, work, entities, sql), "ETL_LEASE_TTL_S": f"{args.lease_ttl_s:g}"}
        expected = expected_checksum(server)
        print("\nclean pass (run id clean):", flush=True)
        clean = clean_pass(server, env, expected)
        drop_target(server)
        print("\nchaos pass:", flush=True)
        chaos = Chaos(server, env, args, clean)
        t0 = time.perf_counter()
        chaos_pass(chaos, runs)
        wall = time.perf_counter() - t0
        check_target(server, TARGET_TABLE, expected, "chaos pass")
    finally:
        server.stop()
    report(chaos.tally, clean, wall, expected)
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(tally: Tally, clean: dict[str, float], wall: float, expected: tuple[int, int]) -> None:
    injected = sum(tally.injected.values())
    print(f"\nfaults injected: {injected}")
    for kind in KINDS:
        note = f" ({tally.missed[kind]} after the stage had finished)" if tally.missed[kind] else ""
        print(f"  {kind:<9} {tally.injected[kind]}{note}")
    if tally.lease_waits:
        waits = ", ".join(f"{w:.1f}" for w in tally.lease_waits)
        print(f"  lease taken over after {waits} s")
    clean_total = sum(clean.values())
    print(
        f"wall: clean pass {clean_total:.1f} s, chaos pass {wall:.1f} s ({wall / clean_total:.1f}x) "
        f"in {tally.processes} etlctl processes\n"
        f"verdict: target exact after the reruns ({expected[0]:,} rows, checksum {expected[1]}), as after the clean pass",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
