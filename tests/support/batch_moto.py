"""An AWS Batch Fargate queue on moto: the IAM service role, a VPC with one subnet and security group, a
managed Fargate compute environment, the job queue and the ``etl-stage`` container job definition."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3

IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/entity-etl:latest"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def create_fargate_queue(
    *,
    queue: str = "etl-fargate",
    definition: str = "etl-stage",
    client: Callable[[str], Any] = boto3.client,
    **container: Any,
) -> dict[str, str]:
    """The queue and job definition; ``container`` adds to the definition's container properties.
    Returns their ARNs as ``queue_arn`` and ``definition_arn``."""
    iam, ec2, batch = client("iam"), client("ec2"), client("batch")
    role = iam.create_role(RoleName="etl-batch-service", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
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
    created = batch.create_job_queue(
        jobQueueName=queue,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    registered = batch.register_job_definition(
        jobDefinitionName=definition,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": IMAGE,
            "command": ["etlctl", "--help"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
            "executionRoleArn": role,
            **container,
        },
    )
    return {"queue_arn": created["jobQueueArn"], "definition_arn": registered["jobDefinitionArn"]}
