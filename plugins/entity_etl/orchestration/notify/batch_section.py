"""The ``batch`` section of a ``task_failed`` event: the task's AWS Batch job, when it ran one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from entity_etl.orchestration.batch.diagnosis import batch_failure_details, cloudwatch_log_url
from entity_etl.orchestration.notify.context import field, xcom
from entity_etl.orchestration.notify.redaction import redact, truncate

#: The XCom keys the amazon provider's ``BatchOperator`` writes its console links under.
BATCH_JOB_XCOM = "batch_job_details"
CLOUDWATCH_XCOM = "cloudwatch_events"


def batch_job_id(task: Any, ti: Any) -> str | None:
    job_id = field(task, "job_id")
    if isinstance(job_id, str) and job_id:
        return job_id
    if ti is None:
        return None
    details = xcom(ti, field(ti, "task_id"), BATCH_JOB_XCOM)
    found = field(details, "job_id")
    return found if isinstance(found, str) and found else None


def batch_section(task: Any, ti: Any, log: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(batch details, CloudWatch URL) of the task's Batch job, when the task ran one."""
    job_id = batch_job_id(task, ti)
    if job_id is None:
        return None, None
    try:
        details = batch_failure_details(job_id, region_name=field(task, "region_name"))
    except Exception as exc:
        log.warning("could not describe AWS Batch job %s: %s: %s", job_id, type(exc).__name__, redact(str(exc)))
        details = {"jobId": job_id, "describeError": f"{type(exc).__name__}: {truncate(redact(str(exc)), 300)}"}
    url = details.get("logUrl")
    if not url and ti is not None:  # the link the provider's BatchOperator saved for the Airflow UI
        saved = xcom(ti, field(ti, "task_id"), CLOUDWATCH_XCOM)
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
