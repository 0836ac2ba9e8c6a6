"""What AWS Batch says about a failed job (``DescribeJobs``), and the console links to it."""

from __future__ import annotations

from typing import Any

from entity_etl.notification_contract import DEFAULT_BATCH_LOG_GROUP

__all__ = ["DEFAULT_BATCH_LOG_GROUP", "batch_failure_details", "batch_job_url", "cloudwatch_log_url"]


def cloudwatch_log_url(region: str, log_group: str, log_stream: str, aws_partition: str = "aws") -> str:
    """The CloudWatch console page of one log stream, as the amazon provider links it in the UI."""
    from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink

    link = CloudWatchEventsLink()
    return str(
        link.format_link(
            aws_domain=link.get_aws_domain(aws_partition),
            region_name=region,
            awslogs_region=region,
            awslogs_group=log_group,
            awslogs_stream_name=log_stream,
        )
    )


def batch_job_url(region: str, job_id: str, aws_partition: str = "aws") -> str:
    from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink

    link = BatchJobDetailsLink()
    return str(link.format_link(aws_domain=link.get_aws_domain(aws_partition), region_name=region, job_id=job_id))


def batch_failure_details(job_id: str, *, client: Any = None, region_name: str | None = None) -> dict[str, Any]:
    """What AWS Batch says about a (failed) job: ``DescribeJobs`` reduced to what an alert needs.

    Returns ``jobId``, ``jobName``, ``jobQueue``, ``status``, ``statusReason``, ``exitCode``,
    ``containerReason``, ``logGroup``, ``logStreamName``, ``logUrl`` (CloudWatch console) and
    ``jobUrl`` (Batch console); a value AWS does not report is ``None``. The exit code, reason and log
    stream come from the job's container, else from its last attempt; for a failed array job, from its
    first failed child (``failedChildJobId``).
    """
    if client is None:
        import boto3

        client = boto3.client("batch", region_name=region_name)
    jobs = client.describe_jobs(jobs=[job_id]).get("jobs", [])
    if not jobs:
        raise LookupError(f"AWS Batch has no job {job_id}")
    job = jobs[0]
    child_id = None
    if not job.get("container") and job.get("arrayProperties") and job.get("status") == "FAILED":
        # An array job (a partitioned extract) has no container of its own: take the first failed child's.
        failed = client.list_jobs(arrayJobId=job_id, jobStatus="FAILED").get("jobSummaryList") or []
        if failed:
            child_id = failed[0]["jobId"]
            child = (client.describe_jobs(jobs=[child_id]).get("jobs") or [{}])[0]
            job = {**job, **{k: child[k] for k in ("container", "attempts", "statusReason") if child.get(k)}}
    container = job.get("container") or {}
    attempts = job.get("attempts") or []
    last_attempt = (attempts[-1].get("container") or {}) if attempts else {}
    log_stream = container.get("logStreamName") or last_attempt.get("logStreamName")
    options = (container.get("logConfiguration") or {}).get("options") or {}
    log_group = options.get("awslogs-group") or DEFAULT_BATCH_LOG_GROUP
    region = options.get("awslogs-region") or client.meta.region_name
    arn_parts = str(job.get("jobArn") or "").split(":")
    partition = arn_parts[1] if len(arn_parts) > 1 and arn_parts[1] else "aws"
    exit_code = container.get("exitCode", last_attempt.get("exitCode"))
    return {
        "jobId": job.get("jobId", job_id),
        "jobName": job.get("jobName"),
        "jobQueue": job.get("jobQueue"),
        "status": job.get("status"),
        "statusReason": job.get("statusReason"),
        "exitCode": exit_code,
        "containerReason": container.get("reason") or last_attempt.get("reason"),
        "logGroup": log_group if log_stream else None,
        "logStreamName": log_stream,
        "logUrl": cloudwatch_log_url(region, log_group, log_stream, partition) if log_stream else None,
        "jobUrl": batch_job_url(client.meta.region_name, job.get("jobId", job_id), partition),
        **({"failedChildJobId": child_id} if child_id else {}),
    }
