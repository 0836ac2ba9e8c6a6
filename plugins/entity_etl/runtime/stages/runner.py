"""run_stage: one stage under the entity lease, recorded in the run store, with its metrics, and every
failure said as one :class:`StageError` line."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from entity_etl.runtime import csv_codec, fencing, run_records, staging_ledger
from entity_etl.runtime.connections import ConnectionNotFoundError
from entity_etl.runtime.databases import DatabaseError
from entity_etl.runtime.lease import LeaseHeldError, LeaseKeeper, LeaseLostError
from entity_etl.runtime.metrics import stage_metrics
from entity_etl.runtime.progress import iso
from entity_etl.runtime.run_store import StaleUpdateError
from entity_etl.runtime.stages.cleanup import cleanup
from entity_etl.runtime.stages.context import STAGES, Attempt, RunContext, StageError, record_name
from entity_etl.runtime.stages.dedupe import dedupe
from entity_etl.runtime.stages.extract import extract
from entity_etl.runtime.stages.load_staging import load_staging
from entity_etl.runtime.stages.load_target import load_target
from entity_etl.runtime.stages.translate import translate
from entity_etl.runtime.stats import StageStats, format_table
from entity_etl.runtime.translators import TranslationError

log = logging.getLogger("entity_etl.runtime.stages")

STAGE_FUNCTIONS: dict[str, Callable[[RunContext, Attempt], dict[str, Any]]] = {
    "cleanup": cleanup,
    "extract": extract,
    "load_staging": load_staging,
    "translate": translate,
    "dedupe": dedupe,
    "load_target": load_target,
}


#: The stages that write to the target database, so raise its fence first (see ``fencing``).
FENCED_STAGES = ("cleanup", "load_staging", "translate", "dedupe", "load_target")


@dataclass(frozen=True)
class _StageRun:
    """Which record one stage run writes: the stage, its record name (``extract.pNN`` for one
    partition), the attempt number, when and how it started."""

    stage: str
    name: str
    attempt: int | None
    started: dt.datetime
    #: How it began: a first attempt, a resumed one, or a rerun of a stage that had succeeded.
    how: str = ""


def _lease(ctx: RunContext) -> contextlib.AbstractContextManager[object]:
    if ctx.lease_store is None:
        return contextlib.nullcontext()
    if ctx.lease_owner:
        return LeaseKeeper(
            ctx.lease_store, ctx.entity, ctx.lease_owner, owner_holds_already=True, expected_epoch=ctx.lease_epoch
        )
    owner = f"etlctl:{ctx.run_id}@{socket.gethostname()}:{os.getpid()}"
    return LeaseKeeper(ctx.lease_store, ctx.entity, owner)


def run_stage(ctx: RunContext, stage: str) -> StageStats:
    """Run one stage and return its statistics.

    Around the stage: the entity lease is held (and renewed), the stage's record in the run store goes
    running -> succeeded/failed with conditional writes, and the stage's metrics are emitted. The
    statistics are also stored next to the run's extract.
    """
    if stage not in STAGE_FUNCTIONS:
        raise StageError(f"{ctx.entity}: unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    try:
        with _lease(ctx) as keeper:
            held = keeper if isinstance(keeper, LeaseKeeper) else None
            fence = None
            if held is not None and stage in FENCED_STAGES:
                fence = fencing.Fence(ctx.entity, held.epoch, held.owner, held.check)
            return _run_recorded(ctx, stage, held, fence)
    except (LeaseHeldError, LeaseLostError) as exc:
        raise StageError(f"{ctx.entity}: {stage}: {exc}") from exc


def _run_recorded(ctx: RunContext, stage: str, held: LeaseKeeper | None, fence: fencing.Fence | None) -> StageStats:
    started = dt.datetime.now(dt.UTC)
    number = ctx.attempt
    name = record_name(ctx, stage)
    resume, how = True, "no earlier attempt"
    if ctx.run_store is not None:
        previous = ctx.run_store.get(ctx.entity, ctx.run_id, name)
        # Resume an attempt that did not finish; redo a stage that had succeeded from the start.
        resume = previous is None or previous.status != "succeeded"
        if previous is not None:
            how = "resumes its checkpoints" if resume else "starts over: the stage had succeeded"
        if number is None:
            number = previous.attempt + 1 if previous else 1
        try:
            run_records.start_stage(
                ctx.run_store,
                ctx.entity,
                ctx.run_id,
                name,
                attempt=number,
                started=started,
                batch_job_id=ctx.batch_job_id,
            )
        except StaleUpdateError as exc:
            raise StageError(f"{ctx.entity}: {name}: not started: {exc}") from exc
    guard = held.check if held is not None else None
    attempt = Attempt(resume=resume, lease_guard=guard, fence=fence, number=number, lease=held)
    run = _StageRun(stage, name, number, started, how)
    t0 = time.perf_counter()
    try:
        stats = _execute(ctx, attempt, run, t0)
        if attempt.lease_guard is not None:
            attempt.lease_guard()  # a run that lost its lease never records success
    except StageError as exc:
        _finish(ctx, run, error=str(exc), duration_s=time.perf_counter() - t0)
        raise
    except LeaseLostError as exc:
        _finish(ctx, run, error=f"{ctx.entity}: {stage}: {exc}", duration_s=time.perf_counter() - t0)
        raise
    except BaseException as exc:  # killed or interrupted (SystemExit, KeyboardInterrupt): say so, then go
        error = f"{ctx.entity}: {stage}: interrupted ({type(exc).__name__})"
        _finish(ctx, run, error=error, duration_s=time.perf_counter() - t0)
        raise
    _finish(ctx, run, stats=stats, duration_s=stats.duration_s)
    if name != stage and stats.details.get("manifest"):
        # The array child that completed the extract also records (and reports) the whole stage.
        whole = _StageRun(stage, stage, number, started)
        _finish(ctx, whole, stats=stats, duration_s=stats.duration_s, emit=False)
        ctx.store.put_bytes(ctx.stats_key(name), stats.to_json().encode())
    _log_finished(ctx, run, stats)
    return stats


def _log_finished(ctx: RunContext, run: _StageRun, stats: StageStats) -> None:
    """The stage's last log line: when it ended and began, its attempt, and the table etlctl prints."""
    when = iso(dt.datetime.now(dt.UTC))
    table = format_table([stats])
    log.info(
        "%s: %s: finished at %s, run %s, attempt %s (started at %s, %s)\n%s",
        *(ctx.entity, run.name, when, ctx.run_id, run.attempt or 1, iso(run.started), run.how, table),
    )


def _finish(
    ctx: RunContext,
    run: _StageRun,
    *,
    stats: StageStats | None = None,
    error: str = "",
    duration_s: float,
    emit: bool = True,
) -> None:
    """Emit the stage's metrics (best effort) and record it succeeded (``stats``) or failed (``error``)."""
    stage, name = run.stage, run.name
    if ctx.metrics is not None and emit:
        try:
            ctx.metrics.emit(ctx.entity, stage, stage_metrics(stats, failed=stats is None, duration_s=duration_s))
        except Exception as exc:  # metrics are best effort: a CloudWatch error never fails a stage
            log.warning("%s: %s: metrics not sent: %s: %s", ctx.entity, stage, type(exc).__name__, exc)
    if ctx.run_store is not None:
        try:
            run_records.finish_stage(
                ctx.run_store,
                ctx.entity,
                ctx.run_id,
                name,
                attempt=run.attempt or 1,
                started=run.started,
                stats=stats.to_dict() if stats is not None else None,
                error=error,
                batch_job_id=ctx.batch_job_id,
            )
        except StaleUpdateError:
            if name == stage and stats is not None and record_name(ctx, stage) != stage:
                return  # another array child already recorded the completed extract
            raise


def _execute(ctx: RunContext, attempt: Attempt, run: _StageRun, t0: float) -> StageStats:
    stage = run.stage
    try:
        if attempt.fence is not None:
            with ctx.connect(ctx.config.target.conn_id) as db:
                fencing.advance(db, attempt.fence)
        result = STAGE_FUNCTIONS[stage](ctx, attempt)
    except (StageError, LeaseLostError):
        raise
    except staging_ledger.LedgerError as exc:
        raise StageError(f"{ctx.entity}: {stage}: {exc}") from None
    except (DatabaseError, ConnectionNotFoundError, csv_codec.CsvFormatError, TranslationError, ValueError) as exc:
        raise StageError(f"{ctx.entity}: {stage}: {exc}") from exc
    except FileNotFoundError as exc:
        raise StageError(f"{ctx.entity}: {stage}: missing file {exc}") from exc
    except Exception as exc:  # anything else (an AWS or OS error): still one line, and recorded as failed
        raise StageError(f"{ctx.entity}: {stage}: {type(exc).__name__}: {exc}") from exc
    stats = StageStats(
        entity=ctx.entity,
        stage=stage,
        run_id=ctx.run_id,
        rows_in=int(result.get("rows_in", 0)),
        rows_out=int(result.get("rows_out", 0)),
        duplicates_removed=int(result.get("duplicates_removed", 0)),
        bytes=int(result.get("bytes", 0)),
        duration_s=round(time.perf_counter() - t0, 3),
        started_at=run.started.isoformat(),
        finished_at=dt.datetime.now(dt.UTC).isoformat(),
        details=result.get("details", {}),
    )
    ctx.store.put_bytes(ctx.stats_key(run.name), stats.to_json().encode())
    return stats
