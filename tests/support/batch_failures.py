"""AWS Batch jobs that fail: a Fargate queue and job definition on moto, and ``DescribeJobs`` answers
in the documented shape through botocore's ``Stubber`` (moto's Batch without Docker runs no container)."""

from __future__ import annotations

from typing import Any

import boto3

from support.batch_moto import create_fargate_queue
from support.notify_events import REGION


def create_batch_queue() -> None:
    """A Fargate compute environment, the ``etl-fargate`` queue and the ``etl-stage`` definition."""
    create_fargate_queue()


def stubbed_batch() -> tuple[Any, Any]:
    """A Batch client with botocore's Stubber: moto's Batch without Docker runs no container, so it
    never reports an exit code or a container reason; the stub answers in the documented shape."""
    from botocore.stub import Stubber

    batch = boto3.client("batch", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    return batch, Stubber(batch)


def described(job_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "jobs": [
            {
                "jobId": job_id,
                "jobName": "etl-de-extract-x",
                "jobArn": f"arn:aws:batch:{REGION}:123456789012:job/{job_id}",
                "jobQueue": f"arn:aws:batch:{REGION}:123456789012:job-queue/etl-fargate",
                "status": "FAILED",
                "startedAt": 1,
                "jobDefinition": "etl-stage",
                **fields,
            }
        ]
    }
