"""deploy/cloudformation/entity-etl.yaml deployed to a moto server, as CloudFormation would deploy it.

``deploy()`` creates the stack with ``create_stack``, then creates through their service APIs the
resources moto's CloudFormation has no model for (``MOTO_LACKS``), with the template's properties
resolved against the deployed stack by ``Resolver`` (Ref, Fn::GetAtt, Fn::Sub, Fn::If, Fn::Join and
the template's conditions). tests/cloudformation/test_cloudformation_deployed.py checks the result.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
CFN_DIR = ROOT / "deploy" / "cloudformation"
TEMPLATE_PATH = CFN_DIR / "entity-etl.yaml"
REGION, ACCOUNT = "eu-west-1", "123456789012"

#: Resource types the template uses that moto's CloudFormation cannot create, and how each is checked.
MOTO_LACKS = {
    "AWS::S3::BucketPolicy": "put_bucket_policy with the template's document",
    "AWS::SNS::TopicPolicy": "set_topic_attributes(Policy) with the template's document",
    "AWS::SNS::Subscription": "subscribe(lambda) with the template's topic, endpoint and RedrivePolicy",
    "AWS::SQS::QueuePolicy": "set_queue_attributes(Policy) with the template's document",
    "AWS::SecretsManager::Secret": "create_secret with the template's name and description, no value",
    "AWS::Lambda::EventInvokeConfig": "put_function_event_invoke_config with the template's settings",
}

NO_VALUE: Any = object()


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    template, matches = decode(str(path))
    assert not matches, [str(m) for m in matches]
    assert template is not None
    return dict(json.loads(json.dumps(template)))


TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]


def package_lambdas() -> ModuleType:
    spec = importlib.util.spec_from_file_location("package_lambdas", CFN_DIR / "package_lambdas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Resolver:
    """Evaluates the template's intrinsic functions against a deployed stack, as CloudFormation would."""

    def __init__(
        self,
        params: dict[str, str],
        physical: dict[str, str],
        attribute: Callable[[str, str], str],
        region: str = REGION,
    ) -> None:
        self.params = {k: v.get("Default", "") for k, v in TEMPLATE["Parameters"].items()} | params
        self.physical = physical
        self.attribute = attribute
        self.region = region

    def condition(self, name: str) -> bool:
        return self._test(TEMPLATE["Conditions"][name])

    def _test(self, node: dict[str, Any]) -> bool:
        ((fn, args),) = node.items()
        if fn == "Fn::Equals":
            return bool(self(args[0]) == self(args[1]))
        if fn == "Fn::Not":
            return not self._test(args[0])
        if fn == "Fn::And":
            return all(self._test(a) for a in args)
        if fn == "Fn::Or":
            return any(self._test(a) for a in args)
        if fn == "Condition":
            return self.condition(args)
        raise AssertionError(f"condition function {fn}")

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}
        if name in pseudo:
            return pseudo[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in TEMPLATE["Parameters"]:
            value = self.params[name]
            kind = TEMPLATE["Parameters"][name]["Type"]
            return value.split(",") if kind.startswith("List<") or kind == "CommaDelimitedList" else str(value)
        return self.physical[name]

    def sub(self, text: str, names: dict[str, Any] | None = None) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if names and name in names:
                return str(names[name])
            if "." in name:
                return self.attribute(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^!}][^}]*)\}", one, text).replace("${!", "${")

    def __call__(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in map(self, node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, args),) = node.items()
            if fn == "Ref":
                return self.ref(args)
            if fn == "Fn::GetAtt":
                return self.attribute(*args)
            if fn == "Fn::Sub":
                return self.sub(args) if isinstance(args, str) else self.sub(args[0], self(args[1]))
            if fn == "Fn::If":
                return self(args[1] if self.condition(args[0]) else args[2])
            if fn == "Fn::Join":
                return args[0].join(self(args[1]))
        return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not NO_VALUE}

    def created(self) -> dict[str, dict[str, Any]]:
        """The template's resources whose condition holds."""
        return {
            name: res for name, res in RESOURCES.items() if "Condition" not in res or self.condition(res["Condition"])
        }


@dataclass
class Stack:
    name: str
    region: str
    params: dict[str, str]
    outputs: dict[str, str]
    physical: dict[str, str]
    resolve: Resolver
    by_moto: set[str] = field(default_factory=set)  # what moto's CloudFormation created itself
    applied: dict[str, Any] = field(default_factory=dict)  # what the test created through the APIs

    def client(self, service: str) -> Any:
        return aws_client(service, self.region)


def aws_client(service: str, region: str) -> Any:
    return boto3.client(service, region_name=region)  # type: ignore[call-overload]


def attribute_of(stack_region: str, physical: dict[str, str]) -> Callable[[str, str], str]:
    def attribute(logical: str, attr: str) -> str:
        kind, phys = RESOURCES[logical]["Type"], physical[logical]
        c = lambda service: aws_client(service, stack_region)  # noqa: E731
        if (kind, attr) == ("AWS::SQS::Queue", "Arn"):
            return str(
                c("sqs").get_queue_attributes(QueueUrl=phys, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            )
        if (kind, attr) == ("AWS::DynamoDB::Table", "Arn"):
            return str(c("dynamodb").describe_table(TableName=phys)["Table"]["TableArn"])
        if (kind, attr) == ("AWS::Events::Rule", "Arn"):
            return str(c("events").describe_rule(Name=phys)["Arn"])
        if (kind, attr) == ("AWS::Lambda::Function", "Arn"):
            return str(c("lambda").get_function(FunctionName=phys)["Configuration"]["FunctionArn"])
        if (kind, attr) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{phys}"
        if (kind, attr) == ("AWS::IAM::Role", "Arn"):
            return str(c("iam").get_role(RoleName=phys)["Role"]["Arn"])
        if kind == "AWS::ECR::Repository":
            repo = c("ecr").describe_repositories(repositoryNames=[phys])["repositories"][0]
            return str({"Arn": repo["repositoryArn"], "RepositoryUri": repo["repositoryUri"]}[attr])
        raise AssertionError(f"GetAtt {logical}.{attr} ({kind}) is not known to the test")

    return attribute


def apply_what_moto_lacks(stack: Stack) -> None:
    """Create the resources moto's CloudFormation skipped, through their APIs, with resolved properties."""
    for name, res in stack.resolve.created().items():
        if res["Type"] not in MOTO_LACKS:
            continue
        props = stack.resolve(res["Properties"])
        kind = res["Type"]
        if kind == "AWS::SecretsManager::Secret":
            created = stack.client("secretsmanager").create_secret(**props)
            stack.physical[name] = created["ARN"]
        elif kind == "AWS::SNS::TopicPolicy":
            for topic in props["Topics"]:
                stack.client("sns").set_topic_attributes(
                    TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
                )
        elif kind == "AWS::SNS::Subscription":
            # The API takes the subscription's RedrivePolicy as a JSON attribute.
            attributes = {"RedrivePolicy": json.dumps(props.pop("RedrivePolicy"))}
            created = stack.client("sns").subscribe(**props, Attributes=attributes, ReturnSubscriptionArn=True)
            stack.physical[name] = created["SubscriptionArn"]
            props["RedrivePolicy"] = json.loads(attributes["RedrivePolicy"])
        elif kind == "AWS::SQS::QueuePolicy":
            for queue in props["Queues"]:
                stack.client("sqs").set_queue_attributes(
                    QueueUrl=queue, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
                )
        elif kind == "AWS::Lambda::EventInvokeConfig":
            stack.client("lambda").put_function_event_invoke_config(**props)
        elif kind == "AWS::S3::BucketPolicy":
            stack.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
        stack.applied[name] = props


def deploy(name: str, region: str, params: dict[str, str], tmp: Path) -> Stack:
    ec2, iam, s3 = (aws_client(s, region) for s in ("ec2", "iam", "s3"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    group = ec2.create_security_group(GroupName="etl-jobs", Description="stage jobs", VpcId=vpc)["GroupId"]
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    # moto's Batch insists on a service role; on AWS the parameter stays empty (the service-linked role).
    service_role = iam.create_role(RoleName=f"batch-service-{region}", AssumeRolePolicyDocument=json.dumps(trust))
    code_bucket = f"entity-etl-code-{region}"
    s3.create_bucket(Bucket=code_bucket, CreateBucketConfiguration={"LocationConstraint": region})
    keys = package_lambdas().build(tmp)
    for key in keys.values():
        s3.upload_file(str(tmp / key), code_bucket, key)
    params = {
        "SubnetIds": ",".join(subnets),
        "SecurityGroupIds": group,
        "BatchServiceRoleArn": service_role["Role"]["Arn"],
        "ImageTag": "3f9c2ab",
        "CodeBucket": code_bucket,
        **keys,
        **params,
    }
    cfn = boto3.client("cloudformation", region_name=region)
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE_PATH.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    described = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
        if r["LogicalResourceId"]
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    resolver = Resolver(params, physical, attribute_of(region, physical), region)
    stack = Stack(name, region, params, outputs, physical, resolver, by_moto=set(physical))
    apply_what_moto_lacks(stack)
    return stack
