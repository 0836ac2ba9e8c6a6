"""AWS Batch jobs that fail: a Fargate queue and job definition on moto, and ``DescribeJobs`` answers
in the documented shape through botocore's ``Stubber`` (moto's Batch without Docker runs no container)."""

from __future__ import annotations

import json
from typing import Any

import boto3

from support.notify_events import REGION


def create_batch_queue() -> None:
    """A Fargate compute environment, the ``etl-fargate`` queue and the ``etl-stage`` definition."""
    iam, ec2, batch = boto3.client("iam"), boto3.client("ec2"), boto3.client("batch")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="etl-batch-service", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="etl-batch", Description="etl batch", VpcId=vpc)["GroupId"]
    env = batch.create_compute_environment(
        computeEnvironmentName="etl-fargate-ce",
        type="MANAGED",
        state="ENABLED",
        computeResources={"type": "FARGATE", "maxvCpus": 16, "subnets": [subnet], "securityGroupIds": [sg]},
        serviceRole=role,
    )
    batch.create_job_queue(
        jobQueueName="etl-fargate",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    batch.register_job_definition(
        jobDefinitionName="etl-stage",
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/entity-etl:latest",
            "command": ["etlctl", "--help"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
            "executionRoleArn": role,
        },
    )


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
