"""The extract's partitions in worker processes, up to ``ETL_EXTRACT_WORKERS`` at once.

Each worker is a child Python process (``python -m entity_etl.runtime.stages.extract_worker``) that
extracts one key-range partition exactly as the stage does in its own process: its own source
connection, parts, checkpoints (``extract.pNN``) and partial manifest; the stage then merges the
manifest as the last array-job child does. A worker joins the stage's entity lease (owner and epoch)
as an array-job child does, and checks it before each checkpoint; it dies with the stage.

The job goes to the worker pickled on its stdin (it holds the source connection, resolved here, so a
worker needs no Airflow); the result comes back as a JSON file. A worker that fails or is killed
fails the stage with its partition named, once the workers still running have finished (no new one
starts); a retry resumes every partition from its checkpoints (a finished one has nothing left to do).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entity_etl.config.model import EntityConfig
from entity_etl.runtime.connections import ConnectionInfo
from entity_etl.runtime.object_store import LocalObjectStore
from entity_etl.runtime.stages.context import Attempt, RunContext, StageError

WORKER_MODULE = "entity_etl.runtime.stages.extract_worker"
#: How often the stage looks at its workers (and checks its lease) while they run.
POLL_S = 0.1


@dataclass(frozen=True)
class PartitionJob:
    """What one worker needs to extract partition ``index``; picklable."""

    config: EntityConfig
    run_id: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    store_url: str
    source: ConnectionInfo
    sql_dir: Path
    scratch_dir: Path | None
    #: Open the run store (``open_run_store``, from the same environment) for the checkpoints.
    run_store: bool
    resume: bool
    #: The stage's lease: owner, epoch and TTL; None: no lease is held.
    lease: tuple[str, int, float] | None
    #: The stage's process: a worker whose parent is gone stops at once.
    parent_pid: int
    index: int


@dataclass
class _Worker:
    job: PartitionJob
    proc: subprocess.Popen[bytes]
    result: Path


def _jobs(ctx: RunContext, attempt: Attempt, indexes: list[int]) -> list[PartitionJob]:
    store = ctx.store
    url = str(store.root) if isinstance(store, LocalObjectStore) else store.url
    lease = None
    if attempt.lease is not None:
        lease = (attempt.lease.owner, attempt.lease.epoch, attempt.lease.ttl_s)
    elif attempt.lease_guard is not None:  # a guard with no keeper behind it: workers could not honour it
        raise StageError(f"{ctx.entity}: extract: ETL_EXTRACT_WORKERS needs the stage's lease keeper")
    source = ctx.resolve_connection(ctx.config.source.conn_id)
    return [
        PartitionJob(
            config=ctx.config,
            run_id=ctx.run_id,
            interval_start=ctx.interval_start,
            interval_end=ctx.interval_end,
            store_url=url,
            source=source,
            sql_dir=ctx.sql_dir,
            scratch_dir=ctx.scratch_dir,
            run_store=ctx.run_store is not None,
            resume=attempt.resume,
            lease=lease,
            parent_pid=os.getpid(),
            index=index,
        )
        for index in indexes
    ]


def _start(job: PartitionJob, results: Path) -> _Worker:
    result = results / f"p{job.index:02d}.json"
    # The worker imports the package from where this process found it (MWAA's plugins.zip, a checkout).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(result)], stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    try:
        proc.stdin.write(pickle.dumps(job))
        proc.stdin.close()
    except BrokenPipeError:  # it died at once; its exit status says how
        pass
    return _Worker(job, proc, result)


def _failure(ctx: RunContext, worker: _Worker, code: int) -> str:
    """The partition and why its worker failed (its own error, else how it ended)."""
    where = f"partition {worker.job.index}"
    try:
        error = str(json.loads(worker.result.read_text(encoding="utf-8"))["error"])
    except (OSError, ValueError, KeyError):
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return f"{where}: its worker process was {how}"
    return f"{where}: {error.removeprefix(f'{ctx.entity}: extract: ')}"


def run_partitions(
    ctx: RunContext, attempt: Attempt, indexes: list[int], workers: int
) -> tuple[dict[int, dict[str, Any]], int]:
    """Extract ``indexes``, up to ``workers`` at once, one worker process each: each partition's
    partial manifest and the chunks resumed in all.

    After a failure no partition is started; those running finish (their checkpoints count for the
    retry), then one :class:`StageError` names every failed partition. An exception here (the lease
    lost, an interrupt) kills the workers first."""
    jobs = _jobs(ctx, attempt, indexes)
    partials: dict[int, dict[str, Any]] = {}
    failures: list[tuple[int, str]] = []
    resumed = 0
    running: list[_Worker] = []
    with tempfile.TemporaryDirectory(dir=ctx.scratch_dir, prefix="extract-workers-") as results:
        try:
            while (jobs and not failures) or running:
                while jobs and not failures and len(running) < workers:
                    running.append(_start(jobs.pop(0), Path(results)))
                time.sleep(POLL_S)
                if attempt.lease_guard is not None:
                    attempt.lease_guard()  # a stage that lost its lease stops its workers
                for worker in [w for w in running if w.proc.poll() is not None]:
                    running.remove(worker)
                    code = worker.proc.returncode
                    if code != 0:
                        failures.append((worker.job.index, _failure(ctx, worker, code)))
                        continue
                    data = json.loads(worker.result.read_text(encoding="utf-8"))
                    partials[worker.job.index] = data["partial"]
                    resumed += int(data["resumed"])
        finally:
            for worker in running:  # only on an exception: no worker outlives the stage's lease
                worker.proc.kill()
                worker.proc.wait()
    if failures:
        raise StageError(f"{ctx.entity}: extract: " + "; ".join(line for _, line in sorted(failures)))
    return partials, resumed
