"""Building the event (:class:`~entity_etl.notification_contract.NotificationEvent`) of one callback."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from entity_etl.notification_contract import KINDS, SCHEMA_VERSION, Deadline, EventError, NotificationEvent
from entity_etl.orchestration.notify.batch_section import batch_section
from entity_etl.orchestration.notify.context import airflow_run_url, entity_from_dag, field, iso
from entity_etl.orchestration.notify.redaction import redact, truncate
from entity_etl.orchestration.notify.run_summary import failed_stage_record, run_summary

SOURCE_ENV = "ETL_NOTIFY_SOURCE"
DEFAULT_SOURCE = "airflow"
_FAILURES = ("task_failed", "dag_run_failed")


@dataclass(frozen=True)
class _Subject:
    """What the callback is about, as far as its context says."""

    dag: Any
    dag_run: Any
    ti: Any
    task: Any
    dag_id: Any
    run_id: Any
    task_id: Any  # a failure's task only


def _subject(kind: str, context: Mapping[str, Any]) -> _Subject:
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    run_id = context.get("run_id") or field(dag_run, "run_id") or field(dag_run, "dag_run_id") or field(ti, "run_id")
    return _Subject(
        dag=dag,
        dag_run=dag_run,
        ti=ti,
        task=context.get("task") or field(ti, "task"),
        dag_id=field(dag, "dag_id") or field(dag_run, "dag_id") or field(ti, "dag_id"),
        run_id=run_id,
        task_id=field(ti, "task_id") if kind in _FAILURES else None,
    )


def _error(kind: str, context: Mapping[str, Any]) -> EventError | None:
    exception = context.get("exception") if kind in _FAILURES else None
    if isinstance(exception, BaseException):
        return {"type": type(exception).__name__, "message": truncate(redact(str(exception)))}
    if isinstance(exception, str) and exception:
        return {"type": None, "message": truncate(redact(exception))}
    return None


def _tries(subject: _Subject) -> tuple[Any, Any]:
    """(try number, max tries) of a failure's task."""
    if not subject.task_id:
        return None, None
    max_tries = field(subject.ti, "max_tries")
    if max_tries is None and subject.task is not None:
        max_tries = field(subject.task, "retries")
    return field(subject.ti, "try_number"), max_tries


def _airflow_urls(subject: _Subject) -> tuple[str | None, str | None]:
    """(the task's log page, the run's page) in the Airflow UI."""
    log_url = None
    if subject.task_id:
        with contextlib.suppress(Exception):
            log_url = field(subject.ti, "log_url")
    run_url = airflow_run_url(str(subject.dag_id), str(subject.run_id)) if subject.dag_id and subject.run_id else None
    return log_url, run_url


def _event_id(kind: str, subject: _Subject, try_number: Any) -> str:
    parts = (kind, subject.dag_id, subject.run_id, subject.task_id, try_number)
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _deadline(context: Mapping[str, Any], dag_run: Any, extra: Mapping[str, Any] | None) -> Deadline:
    return {
        "deadline_time": iso(field(context.get("deadline"), "deadline_time")),
        "queued_at": iso(field(dag_run, "queued_at")),
        "start_date": iso(field(dag_run, "start_date")),
        "state": field(dag_run, "state"),
        "max_duration_s": (extra or {}).get("max_duration_s"),
    }


def _failure_details(
    kind: str, subject: _Subject, entity: str | None, stage: str | None, error: EventError | None, log: Any
) -> tuple[EventError | None, dict[str, Any] | None, str | None]:
    """(error, batch section, CloudWatch log URL) of a failure."""
    batch, cloudwatch = (None, None)
    if kind == "task_failed":
        batch, cloudwatch = batch_section(subject.task, subject.ti, log or _NullLog())
    if kind == "dag_run_failed" and error is None:
        # The DAG processor's context has the failed task but not its exception: the stage's own
        # error (and log link) as the runtime, or the Batch task, recorded it in the run store.
        failed = failed_stage_record(entity, subject.run_id, stage)
        if failed is not None:
            error = {"type": "StageError", "message": truncate(redact(failed.error))}
            cloudwatch = failed.log_url or None
    return error, batch, cloudwatch


class _NullLog:
    def warning(self, *args: Any) -> None:
        pass


def build_event(
    kind: str,
    context: Mapping[str, Any],
    *,
    entity: str | None = None,
    source: str | None = None,
    log: Any = None,
    extra: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> NotificationEvent:
    """The event of ``kind`` for an Airflow callback ``context`` (worker, DAG processor or triggerer).

    ``summary`` (``run_succeeded`` only): entries laid over the summary computed from the run's stage
    statistics, for a DAG that reports figures of its own (the NPS DAG's ``report``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    subject = _subject(kind, context)
    entity = entity or entity_from_dag(subject.dag)
    try_number, max_tries = _tries(subject)
    log_url, run_url = _airflow_urls(subject)
    stage = (field(subject.task, "stage") or subject.task_id) if subject.task_id else None
    error, batch, cloudwatch = _failure_details(kind, subject, entity, stage, _error(kind, context), log)
    reason = context.get("reason")
    dag_run = subject.dag_run
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "source": source or os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE,
        "event_id": _event_id(kind, subject, try_number),
        "emitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "entity": entity,
        "dag_id": subject.dag_id,
        "run_id": subject.run_id,
        "task_id": subject.task_id,
        "stage": stage,
        "logical_date": iso(context.get("logical_date") or field(dag_run, "logical_date")),
        "data_interval": {
            "start": iso(context.get("data_interval_start") or field(dag_run, "data_interval_start")),
            "end": iso(context.get("data_interval_end") or field(dag_run, "data_interval_end")),
        },
        "try_number": try_number,
        "max_tries": max_tries,
        "error": error,
        "reason": truncate(redact(str(reason)), 300) if reason else None,
        "airflow_url": log_url or run_url,
        "airflow_run_url": run_url,
        "cloudwatch_log_url": cloudwatch,
        "batch": batch,
        "summary": {**run_summary(context, subject.ti, entity), **(summary or {})} if kind == "run_succeeded" else None,
        "deadline": _deadline(context, dag_run, extra) if kind == "run_too_long" else None,
    }
