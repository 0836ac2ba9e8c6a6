"""Run notifications: one structured JSON event per occurrence, published to an SNS topic.

:class:`SnsEventNotifier` is an Airflow notifier (``airflow.sdk.BaseNotifier``), usable by any DAG:

* ``task_failed`` — a task's ``on_failure_callback``. Airflow calls it only when the task failed with
  no retries left (a failed try that will be retried calls ``on_retry_callback`` instead).
* ``dag_run_failed`` / ``run_succeeded`` — the DAG's ``on_failure_callback`` / ``on_success_callback``.
* ``run_too_long`` — a Deadline Alert (:func:`run_too_long_alert`), run by the triggerer when a run
  is still going a given time after it was queued.

The topic is the notifier's ``topic_arn`` argument, else the environment variable
``ETL_NOTIFY_TOPIC_ARN``. With neither (the embedded default) the event is written to the task log.
A notification never fails its callback: any error is logged and the callback returns.

Event fields (``schema_version`` 1): ``kind``, ``source``, ``event_id``, ``emitted_at``, ``entity``,
``dag_id``, ``run_id``, ``task_id``, ``stage``, ``logical_date``, ``data_interval``, ``try_number``,
``max_tries``, ``error`` (``type`` and ``message``, truncated and redacted), ``reason``,
``airflow_url`` (the task's log page, else the run), ``airflow_run_url``, ``cloudwatch_log_url``,
``batch`` (for a stage that ran on AWS Batch: :func:`batch_failure_details`), ``summary``
(``run_succeeded``: ``stages``, ``row_counts``, ``duration_s``, plus whatever the caller of
:meth:`SnsEventNotifier.send` adds, such as the NPS DAG's ``report``) and ``deadline``
(``run_too_long``). Keys are always present; unknown values are ``null``. The Teams Lambda
(``lambdas/notifications``) turns them into cards.

SNS is called with boto3 directly (not the amazon provider's ``SnsHook``): the same code then runs in
the worker, the DAG processor and the triggerer without an Airflow connection lookup, and credentials
come from the environment's role, as for the rest of the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

# Their defining modules (the Deadline Alerts guide imports from there; ``airflow.sdk``'s type stub
# does not list them yet).
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from entity_etl.orchestration.batch.diagnosis import batch_failure_details, cloudwatch_log_url
from entity_etl.runtime.redaction import redact as runtime_redact

SCHEMA_VERSION = 1
KINDS = ("task_failed", "dag_run_failed", "run_succeeded", "run_too_long")
TOPIC_ENV = "ETL_NOTIFY_TOPIC_ARN"
SOURCE_ENV = "ETL_NOTIFY_SOURCE"
DEFAULT_SOURCE = "airflow"
MAX_ERROR_CHARS = 1000
#: The XCom keys the amazon provider's ``BatchOperator`` writes its console links under.
BATCH_JOB_XCOM = "batch_job_details"
CLOUDWATCH_XCOM = "cloudwatch_events"


def redact(text: str) -> str:
    """``text`` without credentials, secret-looking values and phone numbers.

    Airflow's secrets masker first (it hides the values it has seen registered: connection passwords
    read in this process), then the runtime's :func:`entity_etl.runtime.redaction.redact`, the one set
    of rules the run store, ``etlctl`` and the Teams Lambda apply too: an error message goes to SNS,
    Teams and our logs and may quote a connection URI or a row value (a phone number in a
    duplicate-key error, say).
    """
    with contextlib.suppress(Exception):  # the masker of the running Airflow process, when it has one
        from airflow.sdk.log import redact as airflow_redact

        text = str(airflow_redact(text))
    return runtime_redact(text)


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- reading a callback context --------------------------------------------------------------------
def _get(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: a context holds objects (worker) or plain dicts (triggerer)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _base_url() -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get("api", "base_url", fallback="http://localhost:8080/")).rstrip("/")


def airflow_run_url(dag_id: str, run_id: str) -> str:
    return f"{_base_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _entity_from_dag(dag: Any) -> str | None:
    for tag in _get(dag, "tags", None) or ():
        if isinstance(tag, str) and tag.startswith("entity:"):
            return tag[len("entity:") :]
    return None


def _xcom(ti: Any, task_id: str, key: str) -> Any:
    try:
        return ti.xcom_pull(task_ids=task_id, key=key)
    except Exception:  # no XCom access from here (e.g. a context without a supervisor)
        return None


def _batch_job_id(task: Any, ti: Any) -> str | None:
    job_id = _get(task, "job_id")
    if isinstance(job_id, str) and job_id:
        return job_id
    if ti is None:
        return None
    details = _xcom(ti, _get(ti, "task_id"), BATCH_JOB_XCOM)
    found = _get(details, "job_id")
    return found if isinstance(found, str) and found else None


def _batch_section(task: Any, ti: Any, log: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(batch details, CloudWatch URL) of the task's Batch job, when the task ran one."""
    job_id = _batch_job_id(task, ti)
    if job_id is None:
        return None, None
    try:
        details = batch_failure_details(job_id, region_name=_get(task, "region_name"))
    except Exception as exc:
        log.warning("could not describe AWS Batch job %s: %s: %s", job_id, type(exc).__name__, redact(str(exc)))
        details = {"jobId": job_id, "describeError": f"{type(exc).__name__}: {truncate(redact(str(exc)), 300)}"}
    url = details.get("logUrl")
    if not url and ti is not None:  # the link the provider's BatchOperator saved for the Airflow UI
        saved = _xcom(ti, _get(ti, "task_id"), CLOUDWATCH_XCOM)
        if isinstance(saved, Mapping) and saved.get("awslogs_group") and saved.get("awslogs_stream_name"):
            url = cloudwatch_log_url(
                str(saved.get("awslogs_region") or saved.get("region_name")),
                str(saved["awslogs_group"]),
                str(saved["awslogs_stream_name"]),
            )
            details["logUrl"] = url
    if details.get("statusReason"):
        details["statusReason"] = truncate(redact(str(details["statusReason"])), 500)
    if details.get("containerReason"):
        details["containerReason"] = truncate(redact(str(details["containerReason"])), 500)
    return details, url


def _stage_records(entity: str | None, run_id: Any) -> list[Any]:
    """The run's stage records in the run store (its ``_run`` record aside); none when there is no
    entity or run id, or no run store reachable from here (the event then just lacks what they give)."""
    if not entity or not run_id:
        return []
    try:
        from entity_etl.runtime.run_store import RUN, open_run_store

        return [r for r in open_run_store().run_records(entity, str(run_id)) if r.stage != RUN]
    except Exception:
        return []


def _stage_stats_from_run_store(entity: str | None, run_id: Any) -> dict[str, Mapping[str, Any]]:
    """The run's per-stage statistics as the runtime recorded them (the run store is the audit trail)."""
    return {r.stage: r.stats for r in _stage_records(entity, run_id) if r.status == "succeeded" and r.stats}


def _failed_stage_record(entity: str | None, run_id: Any, stage: str | None) -> Any:
    """The run store's failed record of ``stage`` (else the run's latest failed stage), or None."""
    failed = [r for r in _stage_records(entity, run_id) if r.status == "failed" and r.error]
    own = [r for r in failed if r.stage == stage]
    return max(own or failed, key=lambda r: r.ended_at or r.started_at, default=None)


def _run_summary(context: Mapping[str, Any], ti: Any, entity: str | None) -> dict[str, Any]:
    """Statistics of the run's stages: from XCom (any return value that looks like stage statistics)
    when this context can read XCom, else from the run store (a DAG callback in the DAG processor, or
    under ``dag.test()``, may have no XCom access)."""
    from entity_etl.runtime.completion_events import row_counts

    dag = context.get("dag")
    found: dict[str, Mapping[str, Any]] = {}
    counts = None
    if ti is not None and dag is not None:
        for task_id in _get(dag, "task_ids", None) or ():
            value = _xcom(ti, task_id, "return_value")
            if not isinstance(value, Mapping):
                continue
            if "rows_out" in value:
                found[task_id] = value
            if isinstance(value.get("row_counts"), Mapping):
                counts = dict(value["row_counts"])
    if not found:
        found = _stage_stats_from_run_store(entity, context.get("run_id"))
    if counts is None and found:
        counts = row_counts(found)
    stages = {
        stage: {k: value.get(k) for k in ("rows_in", "rows_out", "duplicates_removed", "bytes", "duration_s")}
        for stage, value in found.items()
    }
    dag_run = context.get("dag_run")
    start, end = _get(dag_run, "start_date"), _get(dag_run, "end_date")
    duration = (
        (end - start).total_seconds() if isinstance(start, dt.datetime) and isinstance(end, dt.datetime) else None
    )
    return {"stages": stages, "row_counts": counts, "duration_s": duration}


def build_event(
    kind: str,
    context: Mapping[str, Any],
    *,
    entity: str | None = None,
    source: str | None = None,
    log: Any = None,
    extra: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The event of ``kind`` for an Airflow callback ``context`` (worker, DAG processor or triggerer).

    ``summary`` (``run_succeeded`` only): entries laid over the summary computed from the run's stage
    statistics, for a DAG that reports figures of its own (the NPS DAG's ``report``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task") or _get(ti, "task")
    dag_id = _get(dag, "dag_id") or _get(dag_run, "dag_id") or _get(ti, "dag_id")
    run_id = context.get("run_id") or _get(dag_run, "run_id") or _get(dag_run, "dag_run_id") or _get(ti, "run_id")
    task_id = _get(ti, "task_id") if kind in ("task_failed", "dag_run_failed") else None
    logical_date = context.get("logical_date") or _get(dag_run, "logical_date")
    interval_start = context.get("data_interval_start") or _get(dag_run, "data_interval_start")
    interval_end = context.get("data_interval_end") or _get(dag_run, "data_interval_end")

    exception = context.get("exception") if kind in ("task_failed", "dag_run_failed") else None
    error: dict[str, str | None] | None = None
    if isinstance(exception, BaseException):
        error = {"type": type(exception).__name__, "message": truncate(redact(str(exception)))}
    elif isinstance(exception, str) and exception:
        error = {"type": None, "message": truncate(redact(exception))}
    reason = context.get("reason")

    try_number = _get(ti, "try_number") if task_id else None
    max_tries = _get(ti, "max_tries") if task_id else None
    if task_id and max_tries is None and task is not None:
        max_tries = _get(task, "retries")

    log_url = None
    if task_id:
        with contextlib.suppress(Exception):
            log_url = _get(ti, "log_url")
    run_url = airflow_run_url(str(dag_id), str(run_id)) if dag_id and run_id else None

    batch, cloudwatch = (None, None)
    if kind == "task_failed":
        batch, cloudwatch = _batch_section(task, ti, log or _NullLog())
    stage = (_get(task, "stage") or task_id) if task_id else None
    if kind == "dag_run_failed" and error is None:
        # The DAG processor's context has the failed task but not its exception: the stage's own
        # error (and log link) as the runtime, or the Batch task, recorded it in the run store.
        failed = _failed_stage_record(entity or _entity_from_dag(dag), run_id, stage)
        if failed is not None:
            error = {"type": "StageError", "message": truncate(redact(failed.error))}
            cloudwatch = failed.log_url or None

    event_id = hashlib.sha256(
        "\0".join(str(p) for p in (kind, dag_id, run_id, task_id, try_number)).encode()
    ).hexdigest()[:32]
    event: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "source": source or os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE,
        "event_id": event_id,
        "emitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "entity": entity or _entity_from_dag(dag),
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "stage": stage,
        "logical_date": _iso(logical_date),
        "data_interval": {"start": _iso(interval_start), "end": _iso(interval_end)},
        "try_number": try_number,
        "max_tries": max_tries,
        "error": error,
        "reason": truncate(redact(str(reason)), 300) if reason else None,
        "airflow_url": log_url or run_url,
        "airflow_run_url": run_url,
        "cloudwatch_log_url": cloudwatch,
        "batch": batch,
        "summary": (
            {**_run_summary(context, ti, entity or _entity_from_dag(dag)), **(summary or {})}
            if kind == "run_succeeded"
            else None
        ),
        "deadline": None,
    }
    if kind == "run_too_long":
        deadline = context.get("deadline")
        event["deadline"] = {
            "deadline_time": _iso(_get(deadline, "deadline_time")),
            "queued_at": _iso(_get(dag_run, "queued_at")),
            "start_date": _iso(_get(dag_run, "start_date")),
            "state": _get(dag_run, "state"),
            "max_duration_s": (extra or {}).get("max_duration_s"),
        }
    return event


class _NullLog:
    def warning(self, *args: Any) -> None:
        pass


# -- publishing -----------------------------------------------------------------------------------
def publish_event(event: Mapping[str, Any], topic_arn: str, client: Any = None) -> str:
    """Publish ``event`` to the SNS topic; return the SNS message id.

    Message attributes ``kind``, ``entity``, ``source`` and ``schema_version`` let a subscription
    filter (for example, send ``run_succeeded`` to a different endpoint than failures).
    """
    if client is None:
        import boto3

        parts = topic_arn.split(":")
        client = boto3.client("sns", region_name=parts[3] if len(parts) > 3 and parts[3] else None)
    attributes = {
        "kind": {"DataType": "String", "StringValue": str(event["kind"])},
        "schema_version": {"DataType": "Number", "StringValue": str(event["schema_version"])},
        "source": {"DataType": "String", "StringValue": str(event["source"])},
    }
    if event.get("entity"):
        attributes["entity"] = {"DataType": "String", "StringValue": str(event["entity"])}
    subject = f"{event['kind']}: {event.get('dag_id') or ''} {event.get('task_id') or ''}".strip()
    subject = re.sub(r"[^\x20-\x7e]", "?", subject)[:100]  # SNS subjects: ASCII, at most 100 characters
    response = client.publish(
        TopicArn=topic_arn,
        Message=json.dumps(event, sort_keys=True, default=str),
        Subject=subject,
        MessageAttributes=attributes,
    )
    return str(response["MessageId"])


class SnsEventNotifier(BaseNotifier):
    """Publish one structured event (see the module doc) to SNS; log it when no topic is configured.

    ``kind`` is one of :data:`KINDS`. ``entity`` names the entity (default: the DAG's
    ``entity:<id>`` tag). ``topic_arn`` defaults to ``$ETL_NOTIFY_TOPIC_ARN``, ``source`` to
    ``$ETL_NOTIFY_SOURCE`` or ``airflow``. ``max_duration_s`` is carried into ``run_too_long`` events.
    """

    def __init__(
        self,
        kind: str,
        *,
        entity: str | None = None,
        topic_arn: str | None = None,
        source: str | None = None,
        max_duration_s: float | None = None,
        context: Any = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
        super().__init__(context)
        self.kind = kind
        self.entity = entity
        self.topic_arn = topic_arn
        self.source = source
        self.max_duration_s = max_duration_s

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields), so no Jinja environment is asked for.

        Under ``airflow dags test`` a DAG-level callback gets a ``SerializedDAG``, which has no
        ``get_template_env``, and ``BaseNotifier`` fails before ``notify`` (apache/airflow#64649, open;
        the fix proposed upstream in #64993 is this early return).
        """
        if self.template_fields:
            super().render_template_fields(context, jinja_env)

    def notify(self, context: Any) -> None:
        """Build and publish the event. Never raises: a notification must not fail its callback."""
        self.send(context)

    async def async_notify(self, context: Any) -> None:
        """The triggerer's way in (Deadline Alerts): the same, on a thread, off the event loop."""
        await asyncio.to_thread(self.send, context)

    def send(self, context: Any, *, summary: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Build and publish the event; return it (``None`` if it could not be built).

        ``summary``: see :func:`build_event`; a task can call this to post its own figures.
        """
        try:
            event = build_event(
                self.kind,
                context or {},
                entity=self.entity,
                source=self.source,
                log=self.log,
                extra={"max_duration_s": self.max_duration_s} if self.max_duration_s is not None else None,
                summary=summary,
            )
        except Exception as exc:
            self.log.error(
                "could not build the %s notification: %s: %s", self.kind, type(exc).__name__, redact(str(exc))
            )
            return None
        topic_arn = self.topic_arn or os.environ.get(TOPIC_ENV)
        body = json.dumps(event, sort_keys=True, default=str)
        if not topic_arn:
            self.log.warning("notification (no SNS topic: set %s to publish it): %s", TOPIC_ENV, body)
            return event
        try:
            message_id = publish_event(event, topic_arn)
        except Exception as exc:
            self.log.error(
                "could not publish the %s notification to %s: %s: %s; the event was: %s",
                self.kind,
                topic_arn,
                type(exc).__name__,
                redact(str(exc)),
                body,
            )
            return event
        self.log.info(
            "published the %s notification %s to %s (message %s)", self.kind, event["event_id"], topic_arn, message_id
        )
        return event


def run_too_long_alert(
    entity: str | None, after: dt.timedelta, *, topic_arn: str | None = None, source: str | None = None
) -> DeadlineAlert:
    """A Deadline Alert: a ``run_too_long`` event when a run is still going ``after`` it was queued.

    Airflow (3.1+) evaluates it in the scheduler and runs the notifier in the triggerer
    (``AsyncCallback``), with a context holding the ``dag_run`` and the ``deadline``. The alert is
    dropped when the run finishes in time.
    """
    kwargs: dict[str, Any] = {"kind": "run_too_long", "max_duration_s": after.total_seconds()}
    if entity:
        kwargs["entity"] = entity
    if topic_arn:
        kwargs["topic_arn"] = topic_arn
    if source:
        kwargs["source"] = source
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=after,
        callback=AsyncCallback(SnsEventNotifier, kwargs=kwargs),
    )
