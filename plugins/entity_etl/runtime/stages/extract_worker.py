"""One extract worker process (``extract_pool``): ``python -m entity_etl.runtime.stages.extract_worker RESULT``.

Reads its :class:`~entity_etl.runtime.stages.extract_pool.PartitionJob` pickled on stdin, extracts that
one partition as the stage does in its own process (``extract.extract_partitions``), under the stage's
lease, and writes ``{"partial": ..., "resumed": n}`` or ``{"error": "one line"}`` to RESULT.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from entity_etl.runtime.connections import ConnectionInfo, ConnectionNotFoundError
from entity_etl.runtime.csv_codec import CsvFormatError
from entity_etl.runtime.databases import DatabaseError
from entity_etl.runtime.lease import LeaseKeeper, LeaseLostError, open_lease_store
from entity_etl.runtime.object_store import open_object_store
from entity_etl.runtime.progress import configure_logging
from entity_etl.runtime.redaction import install_log_redaction, redact
from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages.context import Attempt, RunContext, StageError
from entity_etl.runtime.stages.extract import extract_partitions
from entity_etl.runtime.stages.extract_pool import PartitionJob
from entity_etl.runtime.translators import Translator


def _watch_parent(parent_pid: int) -> None:
    """SIGKILL this worker once the stage's process is gone (killed with no chance to stop it): a
    worker never goes on extracting for a stage that no longer holds the lease."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="extract-worker-parent", daemon=True).start()


def _no_translator() -> Translator:
    raise RuntimeError("the extract translates nothing")


def _context(job: PartitionJob) -> RunContext:
    def resolve(conn_id: str) -> ConnectionInfo:
        if conn_id != job.source.conn_id:
            raise KeyError(conn_id)
        return job.source

    return RunContext(
        config=job.config,
        run_id=job.run_id,
        interval_start=job.interval_start,
        interval_end=job.interval_end,
        store=open_object_store(job.store_url),
        resolve_connection=resolve,
        sql_dir=job.sql_dir,
        translator_factory=_no_translator,
        scratch_dir=job.scratch_dir,
        run_store=open_run_store() if job.run_store else None,
        partition=job.index,
    )


def run(job: PartitionJob) -> dict[str, Any]:
    ctx = _context(job)
    sql_path = ctx.sql_dir / ctx.config.source.extract_sql
    sql = sql_path.read_text(encoding="utf-8")
    keeper: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if job.lease is not None:
        owner, epoch, ttl_s = job.lease
        keeper = LeaseKeeper(
            open_lease_store(), ctx.entity, owner, ttl_s=ttl_s, owner_holds_already=True, expected_epoch=epoch
        )
    with keeper as held:
        attempt = Attempt(resume=job.resume, lease_guard=held.check if held is not None else None, lease=held)
        partials, resumed = extract_partitions(ctx, attempt, sql, sql_path, [job.index])
        if held is not None:
            held.check()  # a worker that lost the lease never reports its partition done
    return {"partial": partials[job.index], "resumed": resumed}


def _describe(exc: BaseException) -> str:
    """The error as the stage's one line says it (the stage adds the entity, ``extract`` and the partition)."""
    if isinstance(exc, StageError | LeaseLostError | DatabaseError | ConnectionNotFoundError | CsvFormatError):
        return str(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"missing file {exc}"
    return f"{type(exc).__name__}: {exc}"


def main() -> int:
    result = Path(sys.argv[1])
    configure_logging()  # the partition's plan and progress on stderr, as the stage's own
    install_log_redaction()
    # From the stage process that started this worker (extract_pool), through a pipe of its own.
    job: PartitionJob = pickle.loads(sys.stdin.buffer.read())  # noqa: S301
    _watch_parent(job.parent_pid)
    try:
        out: dict[str, Any] = run(job)
        code = 0
    except BaseException as exc:
        out, code = {"error": redact(" ".join(_describe(exc).split()))}, 1
    result.write_text(json.dumps(out), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
