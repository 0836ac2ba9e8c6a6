"""The card of an event of the Airflow notifier (:class:`notification_contract.NotificationEvent`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from card import card_message, open_url


def airflow_card(message: Mapping[str, Any]) -> dict[str, Any]:
    kind = message["kind"]
    name = message.get("entity") or message.get("dag_id") or "?"
    where = message.get("stage") or message.get("task_id")
    title, color = {
        "task_failed": (f"❌ {name}: {where} failed", "Attention"),
        "dag_run_failed": (f"❌ {name}: run failed" + (f" at {where}" if where else ""), "Attention"),
        "run_succeeded": (f"✅ {name}: run succeeded", "Good"),
        "run_too_long": (f"⏰ {name}: run is taking too long", "Warning"),
    }[kind]
    error = message.get("error") or {}
    error_text = ": ".join(str(p) for p in (error.get("type"), error.get("message")) if p) if error else None
    interval = message.get("data_interval") or {}
    batch = message.get("batch") or {}
    tries = None
    if message.get("try_number") is not None:
        tries = f"{message['try_number']}" + (
            f" of {int(message['max_tries']) + 1}" if message.get("max_tries") is not None else ""
        )
    facts: list[tuple[str, Any]] = [
        ("Entity", message.get("entity")),
        ("Stage", where),
        ("DAG", message.get("dag_id")),
        ("Run", message.get("run_id")),
        ("Data interval", f"{interval.get('start')} → {interval.get('end')}" if interval.get("start") else None),
        ("Try", tries),
        ("Error", error_text),
        ("Reason", message.get("reason")),
    ]
    if batch:
        facts += [
            ("Batch job", batch.get("jobName") or batch.get("jobId")),
            ("Batch status", batch.get("statusReason")),
            ("Exit code", batch.get("exitCode")),
            ("Container", batch.get("containerReason")),
        ]
    deadline = message.get("deadline") or {}
    if kind == "run_too_long":
        facts += [("Queued at", deadline.get("queued_at")), ("Deadline", deadline.get("deadline_time"))]
    summary = message.get("summary") or {}
    if kind == "run_succeeded":
        counts = summary.get("row_counts") or {}
        facts += [(f"Rows {k.replace('_', ' ')}", v) for k, v in counts.items()]
        if summary.get("duration_s") is not None:
            facts.append(("Duration", f"{float(summary['duration_s']):.0f} s"))
    facts.append(("Source", message.get("source")))
    actions = [
        open_url("Open in Airflow", message.get("airflow_url")),
        open_url("Airflow run", message.get("airflow_run_url"))
        if message.get("airflow_run_url") != message.get("airflow_url")
        else None,
        open_url("CloudWatch logs", message.get("cloudwatch_log_url") or batch.get("logUrl")),
        open_url("Batch job", batch.get("jobUrl")),
    ]
    return card_message(title, color, facts, actions)
