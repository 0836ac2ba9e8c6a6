"""The card of an AWS Batch EventBridge event: a failed job, or a blocked job queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from card import card_message, open_url
from notification_contract import BATCH_FAILED, DEFAULT_BATCH_LOG_GROUP, cloudwatch_log_url, console_domain
from undeliverable import Undeliverable


def _arn_name(arn: Any) -> Any:
    return arn.rsplit("/", 1)[-1] if isinstance(arn, str) and "/" in arn else arn


def _command_arg(command: Any, flag: str) -> str | None:
    """``--entity de`` and friends from the stage job's command (``etlctl run-stage ...``)."""
    if isinstance(command, list) and flag in command:
        index = command.index(flag)
        if index + 1 < len(command):
            return str(command[index + 1])
    return None


def batch_card(event: Mapping[str, Any]) -> dict[str, Any]:
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise Undeliverable("malformed_message", "the EventBridge event has no detail")
    kind = event.get("detail-type")
    region = str(event.get("region") or "")
    job_arn = detail.get("jobArn")
    job_id = detail.get("jobId")
    queue_arn = detail.get("jobQueue")
    container = detail.get("container") or {}
    attempts = detail.get("attempts") or []
    last_attempt = (attempts[-1].get("container") or {}) if attempts else {}
    command = container.get("command")
    domain = console_domain(job_arn or queue_arn)
    job_url = f"https://{domain}/batch/home?region={region}#jobs/detail/{job_id}" if job_id else None
    common: list[tuple[str, Any]] = [
        ("Entity", _command_arg(command, "--entity")),
        ("Stage", _command_arg(command, "--stage")),
        ("Run", _command_arg(command, "--run-id")),
        ("Job", detail.get("jobName")),
        ("Job queue", _arn_name(queue_arn)),
    ]
    if kind == BATCH_FAILED:
        if detail.get("status") != "FAILED":
            raise Undeliverable("unknown_kind", f"Batch job state {detail.get('status')!r} is not alerted on")
        stream = container.get("logStreamName") or last_attempt.get("logStreamName")
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group") or DEFAULT_BATCH_LOG_GROUP
        log_region = options.get("awslogs-region") or region
        exit_code = container.get("exitCode", last_attempt.get("exitCode"))
        facts = [
            *common,
            ("Status reason", detail.get("statusReason")),
            ("Exit code", exit_code),
            ("Container", container.get("reason") or last_attempt.get("reason")),
            ("Attempts", len(attempts) or None),
            ("Region", region),
        ]
        actions = [
            open_url("CloudWatch logs", cloudwatch_log_url(log_region, group, stream, job_arn) if stream else None),
            open_url("Batch job", job_url),
        ]
        return card_message(f"❌ AWS Batch job failed: {detail.get('jobName')}", "Attention", facts, actions)
    queue_url = f"https://{domain}/batch/home?region={region}#queues/detail/{queue_arn}" if queue_arn else None
    facts = [
        *common,
        ("Status", detail.get("status")),
        ("Blocked because", detail.get("statusReason")),
        ("Region", region),
    ]
    actions = [open_url("Job queue", queue_url), open_url("Batch job", job_url)]
    return card_message(f"⚠️ AWS Batch job queue blocked: {_arn_name(queue_arn)}", "Warning", facts, actions)
