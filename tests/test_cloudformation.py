"""The infrastructure template, deploy/cloudformation/entity-etl.yaml: linted, deployed, and compared.

* ``cfn-lint`` passes on every template in deploy/cloudformation/ (and fails on a broken one).
* The template agrees with what it deploys for: the run-store and lease tables with
  ``DynamoRunStore.table_definition()`` / ``DynamoLeaseStore.table_definition()``, the survey tables,
  policies, functions and mapping with ``lambdas/survey/infra/``, the EventBridge rules with
  ``deploy/eventbridge/batch-failures.json``, the job definition with ``FORWARDED_ENV``, the queue and
  definition names with ``include/entities/_defaults.yaml``.
* Least privilege: no wildcard action, ``logs:`` only ``CreateLogStream``/``PutLogEvents``, no
  ``Resource: "*"`` but for the actions in ``STAR_RESOURCE_EXCEPTIONS``, every other resource scoped to
  this account and region and to the stack's own resources (or a parameter naming an outside one).
* It is deployed with ``create_stack`` to a real moto server (twice: with the survey and without).

moto's CloudFormation (5.2) has no model for ``MOTO_LACKS`` (it skips them with a warning): after the
deploy, ``support/cloudformation_stack.py`` (the deployer and the template's ``Resolver``) creates each
of them through its service API with the template's own properties, resolved against the deployed stack,
and the tests check the result. It also drops some properties of the types
it does create (``MOTO_DROPS``, e.g. DynamoDB point-in-time recovery, S3 versioning, Lambda layers);
those are checked on the template itself.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import fnmatch
import hashlib
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

import entity_etl.runtime.lease as lease_module
from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.batch.job_spec import FORWARDED_ENV, batch_job_name, container_overrides, stage_command
from entity_etl.runtime.lease import DynamoLeaseStore
from entity_etl.runtime.run_store import DynamoRunStore
from support.cloudformation_stack import (
    ACCOUNT,
    CFN_DIR,
    MOTO_LACKS,
    REGION,
    RESOURCES,
    ROOT,
    TEMPLATE,
    TEMPLATE_PATH,
    Stack,
    deploy,
    package_lambdas,
)
from support.servers import MotoServer

TEMPLATES = sorted(CFN_DIR.glob("*.yaml"))
RULES_FILE = ROOT / "deploy" / "eventbridge" / "batch-failures.json"
SURVEY_INFRA = ROOT / "lambdas" / "survey" / "infra"
NOTIFICATION_EVENTS = ROOT / "lambdas" / "notifications" / "events"

OTHER_REGION = "eu-central-1"
INSTANCE_ID = "aaaaaaaa-bbbb-cccc-dddd-111111111111"
FLOW_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
SOURCE_NUMBER = "+442079460000"
CTR_STREAM = "connect-ctr"
CTR_KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"
POWERTOOLS_VERSION = "18"
AIRFLOW_ROLE = "airflow-execution"

#: Properties moto's CloudFormation accepts and then ignores; each is asserted on the template instead.
MOTO_DROPS = {
    "AWS::DynamoDB::Table": ["PointInTimeRecoverySpecification", "SSESpecification", "TimeToLiveSpecification"],
    "AWS::S3::Bucket": [
        "VersioningConfiguration",
        "PublicAccessBlockConfiguration",
        "LifecycleConfiguration",
        "OwnershipControls",
    ],
    "AWS::ECR::Repository": ["ImageScanningConfiguration", "LifecyclePolicy", "EncryptionConfiguration"],
    "AWS::Lambda::Function": ["Architectures", "Layers"],
    "AWS::Batch::JobQueue": ["JobStateTimeLimitActions"],
    "AWS::Batch::JobDefinition": ["PlatformCapabilities", "PropagateTags", "Timeout"],
}
# moto also ignores AWS::IAM::Role's ManagedPolicyArns: the template's managed policies attach
# themselves to their roles (``Roles``), which moto honours.
#: Actions AWS lets a policy grant only on ``Resource: "*"``, and why each is needed.
STAR_RESOURCE_EXCEPTIONS = {
    "ecr:GetAuthorizationToken": "the registry login token has no resource type (pulling the image is scoped)",
    "cloudwatch:PutMetricData": "no resource type; limited to ETL_METRICS_NAMESPACE by the cloudwatch:namespace key",
    "translate:TranslateText": "no resource type without a custom terminology (ETL_TRANSLATOR=amazon)",
    "batch:DescribeJobs": "no resource-level permissions in AWS Batch (the operator follows its job)",
    "batch:ListJobs": "no resource-level permissions in AWS Batch (a retry looks for the still-active job)",
}
#: Deny statements (they grant nothing) that name a wildcard, and why.
DENY_EXCEPTIONS = {"TlsOnly": "the bucket refuses every S3 call without TLS, whoever makes it"}
#: The only logs: actions a role gets: writing to its own log group (the template creates the groups).
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in RESOURCES.items() if res["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def survey_placeholders() -> dict[str, str]:
    return {
        "${AWS::Region}": REGION,
        "${AWS::AccountId}": ACCOUNT,
        "${ConnectInstanceId}": INSTANCE_ID,
        "${CtrStreamName}": CTR_STREAM,
        "${CtrStreamKmsKeyId}": CTR_KEY,
        "${SurveyContactFlowId}": FLOW_ID,
        "${SurveySourcePhoneNumber}": SOURCE_NUMBER,
        "${PowertoolsLayerVersion}": POWERTOOLS_VERSION,
    }


def filled(path: Path) -> Any:
    text = path.read_text()
    for placeholder, value in survey_placeholders().items():
        text = text.replace(placeholder, value)
    assert "${" not in text, f"{path.name}: a placeholder the test does not know"
    return json.loads(text)


def survey_json(path: Path) -> Any:
    """A survey infra file as written (Fn::Sub placeholders left in), ``arn:${AWS::Partition}`` style."""
    return json.loads(path.read_text().replace("arn:aws:", "arn:${AWS::Partition}:"))


# -- 1. cfn-lint -------------------------------------------------------------------------------------
def cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("cfn-lint")
    assert binary.exists(), "cfn-lint is in the dev dependency group (uv sync)"
    return subprocess.run([str(binary), "--", *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_there_is_a_template_and_the_linter_passes_it() -> None:
    assert TEMPLATE_PATH in TEMPLATES
    result = cfn_lint(*TEMPLATES)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_linter_fails_a_broken_template(tmp_path: Path) -> None:
    """The gate has teeth: a misspelt property and a retired runtime, in this template's own resources."""
    queue = RESOURCES["CompletionDeadLetterQueue"]
    function = RESOURCES["NotificationsFunction"]
    broken = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Queue": {"Type": queue["Type"], "Properties": {"QueueName": "q", "RetentionPeriod": 14}},
            "Function": {
                "Type": function["Type"],
                "Properties": {
                    **{k: function["Properties"][k] for k in ("Handler", "Timeout")},
                    "Runtime": "python2.7",
                    "Role": "arn:aws:iam::123456789012:role/r",
                    "Code": {"ZipFile": "def handler(event, context): pass"},
                },
            },
        },
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = cfn_lint(path)
    assert result.returncode != 0
    assert "RetentionPeriod" in result.stdout and "python2.7" in result.stdout


# -- static: the template against the code and the definition files ------------------------------------
def index_view(indexes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]} for i in indexes),
        key=lambda i: i["IndexName"],
    )


def table_view(definition: dict[str, Any]) -> dict[str, Any]:
    """What must agree between a CreateTable request, a template table and a described table."""
    return {
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": sorted(definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "LocalSecondaryIndexes": index_view(definition.get("LocalSecondaryIndexes", [])),
        "GlobalSecondaryIndexes": index_view(definition.get("GlobalSecondaryIndexes", [])),
        "BillingMode": definition.get("BillingMode") or definition["BillingModeSummary"]["BillingMode"],
    }


def survey_tables() -> dict[str, dict[str, Any]]:
    specs = [json.loads(p.read_text()) for p in sorted((SURVEY_INFRA / "tables").glob("*.json"))]
    return {spec["TableName"]: spec for spec in specs if "KeySchema" in spec}


#: logical id -> (the definition the code or the survey files hold, the TTL attribute it needs)
def expected_tables() -> dict[str, tuple[dict[str, Any], str | None]]:
    survey = survey_tables()
    ttl = json.loads((SURVEY_INFRA / "tables" / "survey-callback-markers.ttl.json").read_text())
    return {
        "RunsTable": (DynamoRunStore.table_definition("entity-etl-runs"), None),
        # lease.py writes "#ttl" (epoch seconds) beside expires_at: DynamoDB tidies old rows with it.
        "LeasesTable": (DynamoLeaseStore.table_definition("entity-etl-leases"), "ttl"),
        "SurveyResponsesTable": (survey["SurveyResponses"], None),
        "SurveyCustomerInfoTable": (survey["SurveyCustomerInfo"], None),
        "SurveyCallbackMarkersTable": (
            survey["SurveyCallbackMarkers"],
            ttl["TimeToLiveSpecification"]["AttributeName"],
        ),
    }


def test_the_template_tables_are_the_code_and_survey_definitions() -> None:
    tables = of_type("AWS::DynamoDB::Table")
    expected = expected_tables()
    assert set(tables) == set(expected)
    assert '"#ttl": "ttl"' in Path(lease_module.__file__ or "").read_text()
    for name, (definition, ttl_attribute) in expected.items():
        props = tables[name]["Properties"]
        assert table_view(props) == table_view(definition), name
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert props["SSESpecification"] == {"SSEEnabled": True}, name
        if ttl_attribute:
            assert props["TimeToLiveSpecification"] == {"AttributeName": ttl_attribute, "Enabled": True}, name
        else:
            assert "TimeToLiveSpecification" not in props, name
        assert tables[name]["DeletionPolicy"] == tables[name]["UpdateReplacePolicy"] == "Retain", name
        for key in ("DeletionProtectionEnabled", "Tags"):  # the survey files' own settings
            if key in definition:
                assert props[key] == definition[key], (name, key)
    for name in survey_tables():  # the survey's fixed table names, as its policies and functions use them
        assert [k for k, v in tables.items() if v["Properties"]["TableName"] == name] != [], name


def test_the_template_rules_are_the_eventbridge_file_and_target_the_topic() -> None:
    rules = {res["Properties"]["Name"]: res for res in of_type("AWS::Events::Rule").values()}
    expected = json.loads(RULES_FILE.read_text())["rules"]
    assert set(rules) == {rule["Name"] for rule in expected}
    for rule in expected:
        props = rules[rule["Name"]]["Properties"]
        assert {k: props[k] for k in ("Description", "State", "EventPattern")} == {
            k: rule[k] for k in ("Description", "State", "EventPattern")
        }
        assert props["Targets"] == [
            {
                "Id": "notifications",
                "Arn": {"Ref": "AlertsTopic"},
                "DeadLetterConfig": {"Arn": {"Fn::GetAtt": ["NotificationsDeadLetterQueue", "Arn"]}},
            }
        ]
    # Job names of this project match the patterns' prefix.
    name = batch_job_name("de", "extract", "scheduled__2026-11-01T00:00:00+00:00")
    assert all(name.startswith(r["EventPattern"]["detail"]["jobName"][0]["prefix"]) for r in expected)


def test_properties_moto_drops_are_set_in_the_template() -> None:
    for kind, names in MOTO_DROPS.items():
        for prop in names:
            assert any(prop in res["Properties"] for res in of_type(kind).values()), (kind, prop)
    assert not [name for name, res in of_type("AWS::IAM::Role").items() if "ManagedPolicyArns" in res["Properties"]]
    bucket = RESOURCES["DataBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    # The object store is s3://<bucket>/etl and the stages write extracts/<entity>/<run>/ under it.
    from entity_etl.runtime import object_keys

    assert object_keys.extract_prefix("de", "scheduled__2026-01-01").startswith("extracts/de/")
    assert rules["expire-extracts"]["Prefix"] == "etl/extracts/"
    assert rules["expire-extracts"]["ExpirationInDays"] == {"Ref": "ExtractRetentionDays"}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "NoncurrentVersionRetentionDays"}
    }
    assert rules["abort-incomplete-multipart-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    repository = RESOURCES["StageRepository"]["Properties"]
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    assert repository["EncryptionConfiguration"] == {"EncryptionType": "AES256"}
    lifecycle = json.loads(repository["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert [rule["selection"]["tagStatus"] for rule in lifecycle] == ["untagged", "any"]  # "any" must come last
    assert all(rule["action"] == {"type": "expire"} for rule in lifecycle)

    queue = RESOURCES["JobQueue"]["Properties"]
    assert queue["JobStateTimeLimitActions"][0]["Action"] == "CANCEL"
    job = RESOURCES["StageJobDefinition"]["Properties"]
    assert job["PlatformCapabilities"] == ["FARGATE"]
    assert job["Timeout"] == {"AttemptDurationSeconds": {"Ref": "JobTimeoutSeconds"}}
    assert job["RetryStrategy"] == {"Attempts": 1}  # Airflow's retries resume from checkpoints
    compute = RESOURCES["ComputeEnvironment"]["Properties"]
    assert compute["ComputeResources"]["Type"] == "FARGATE"
    assert compute["ComputeResources"]["Subnets"] == {"Ref": "SubnetIds"}
    assert compute["ComputeResources"]["SecurityGroupIds"] == {"Ref": "SecurityGroupIds"}

    for name, group in of_type("AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    for name, function in of_type("AWS::Lambda::Function").items():
        assert function["Properties"]["Architectures"] == ["arm64"], name
        assert set(function["Properties"]["Code"]) == {"S3Bucket", "S3Key"}, name
    for name, queue_res in of_type("AWS::SQS::Queue").items():
        assert queue_res["Properties"]["SqsManagedSseEnabled"] is True, name


def test_survey_functions_are_functions_json() -> None:
    functions = {
        res["Properties"]["FunctionName"]: res
        for res in of_type("AWS::Lambda::Function").values()
        if isinstance(res["Properties"]["FunctionName"], str)
    }
    for entry in survey_json(SURVEY_INFRA / "functions.json"):
        spec = entry["Function"]
        props = functions[spec["FunctionName"]]["Properties"]
        for key in ("Description", "Runtime", "Architectures", "Handler", "Timeout", "MemorySize"):
            assert props[key] == spec[key], (spec["FunctionName"], key)
        assert [layer["Fn::Sub"] for layer in props["Layers"]] == spec["Layers"]
        assert set(props["Environment"]["Variables"]) == set(spec["Environment"]["Variables"])


def test_no_secret_value_is_in_the_template() -> None:
    secrets = of_type("AWS::SecretsManager::Secret")
    assert set(secrets) == {"TeamsWebhookSecret", "EtlTargetConnectionSecret"}
    assert secrets["EtlTargetConnectionSecret"]["Properties"]["Name"] == {"Fn::Sub": "${SecretsPrefix}/etl_target"}
    for name, secret in secrets.items():
        assert set(secret["Properties"]) <= {"Name", "Description", "Tags"}, name  # no SecretString
        assert secret["DeletionPolicy"] == "Retain", name
    text = TEMPLATE_PATH.read_text()
    assert not re.search(r"webhook\.office\.com|logic\.azure\.com|://[^/\s:]+:[^@\s]+@", text)
    assert not [name for name in TEMPLATE["Parameters"] if re.search("password|token|webhookurl", name, re.I)]


# -- least privilege ---------------------------------------------------------------------------------
def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A document's statements, both branches of each Fn::If (AWS::NoValue dropped)."""
    found: list[dict[str, Any]] = []
    for statement in as_list(document["Statement"]):
        if isinstance(statement, dict) and "Fn::If" in statement:
            found.extend(s for s in statement["Fn::If"][1:] if s != {"Ref": "AWS::NoValue"})
        else:
            found.append(statement)
    return found


def identity_policies() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, res in RESOURCES.items():
        if res["Type"] == "AWS::IAM::Role":
            for policy in res["Properties"].get("Policies", []):
                yield f"{name}/{policy['PolicyName']}", policy["PolicyDocument"]
        elif res["Type"] == "AWS::IAM::ManagedPolicy":
            yield name, res["Properties"]["PolicyDocument"]


def references(node: Any) -> set[str]:
    """Names a template expression refers to (Ref, GetAtt, ${...} in Fn::Sub)."""
    if isinstance(node, list):
        return set().union(*map(references, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    if "Ref" in node:
        return {node["Ref"]}
    if "Fn::GetAtt" in node:
        return {node["Fn::GetAtt"][0]}
    if "Fn::Sub" in node:
        text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
        return {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
    return set().union(*map(references, node.values()))


def check_action(action: str, where: str) -> None:
    assert isinstance(action, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{where}: {action!r}"
    if action.startswith("logs:"):
        assert action in LOG_ACTIONS, f"{where}: {action} (logs: only write to the function's own group)"


def test_identity_policies_are_least_privilege() -> None:
    policies = dict(identity_policies())
    assert len(policies) == 9  # 5 roles with inline policies, 4 managed policies
    star_actions: set[str] = set()
    for where, document in policies.items():
        for statement in statements(document):
            assert statement["Effect"] == "Allow", where
            assert not {"NotAction", "NotResource", "Principal"} & set(statement), where
            actions = as_list(statement["Action"])
            for action in actions:
                check_action(action, where)
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    assert set(actions) <= set(STAR_RESOURCE_EXCEPTIONS), f"{where}: {actions} on *"
                    star_actions.update(actions)
                    continue
                assert isinstance(resource, dict), f"{where}: hard-coded resource {resource!r}"
                refs = references(resource)
                assert refs & set(RESOURCES) or "AWS::AccountId" in refs, f"{where}: {resource} is not this stack's"
            if "cloudwatch:PutMetricData" in actions:
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": {"Ref": "MetricsNamespace"}}}
    assert star_actions == set(STAR_RESOURCE_EXCEPTIONS), "an exception nobody needs any more: drop it"


def test_resource_and_trust_policies_name_their_principals() -> None:
    for name, res in RESOURCES.items():
        if res["Type"] == "AWS::IAM::Role":
            (trust,) = res["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert trust["Action"] == "sts:AssumeRole" and trust["Effect"] == "Allow", name
            assert trust["Principal"]["Service"] in {"lambda.amazonaws.com", "ecs-tasks.amazonaws.com"}, name
            assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}, name
    (tls,) = statements(RESOURCES["DataBucketPolicy"]["Properties"]["PolicyDocument"])
    assert tls["Sid"] in DENY_EXCEPTIONS and tls["Effect"] == "Deny" and tls["Action"] == "s3:*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (publish,) = statements(RESOURCES["AlertsTopicPolicy"]["Properties"]["PolicyDocument"])
    assert publish["Principal"] == {"Service": "events.amazonaws.com"} and publish["Action"] == "sns:Publish"
    assert publish["Resource"] == {"Ref": "AlertsTopic"}
    assert publish["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        {"Fn::GetAtt": [rule, "Arn"]} for rule in of_type("AWS::Events::Rule")
    ]
    for name, permission in of_type("AWS::Lambda::Permission").items():
        assert permission["Properties"]["Action"] == "lambda:InvokeFunction", name
        assert "SourceArn" in permission["Properties"], name


def test_sns_and_eventbridge_delivery_failures_have_a_dead_letter_queue_that_lets_them_in() -> None:
    """SNS (to the Lambda) and EventBridge (to the topic) keep what they cannot deliver in an SQS queue,
    and that queue's policy lets exactly those senders in: without it, the dead letters are lost too."""
    dlq = {"Fn::GetAtt": ["NotificationsDeadLetterQueue", "Arn"]}
    senders: dict[str, list[Any]] = {}  # service principal -> the sources that dead-letter to the queue
    for name, subscription in of_type("AWS::SNS::Subscription").items():
        assert subscription["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": dlq}, name
        senders.setdefault("sns.amazonaws.com", []).append(subscription["Properties"]["TopicArn"])
    for name, rule in of_type("AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            assert target["DeadLetterConfig"] == {"Arn": dlq}, (name, target["Id"])
        senders.setdefault("events.amazonaws.com", []).append({"Fn::GetAtt": [name, "Arn"]})
    assert set(senders) == {"sns.amazonaws.com", "events.amazonaws.com"}
    (policy,) = of_type("AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [{"Ref": "NotificationsDeadLetterQueue"}]
    found = statements(policy["Properties"]["PolicyDocument"])
    assert len(found) == len(senders)
    for statement in found:
        assert statement["Effect"] == "Allow" and statement["Action"] == "sqs:SendMessage", statement["Sid"]
        assert statement["Resource"] == dlq, statement["Sid"]
        ((key, service),) = statement["Principal"].items()
        assert key == "Service", statement["Sid"]
        assert list(statement["Condition"]) == ["ArnEquals"], statement["Sid"]
        assert as_list(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == senders.pop(service)
    assert senders == {}


def runtime_client_calls() -> dict[str, set[str]]:
    """Module (a package counts as one) -> the boto3 operations it calls (``client.put_item(...)``,
    paginators), found by AST."""
    calls: dict[str, set[str]] = {}
    runtime = ROOT / "plugins/entity_etl/runtime"
    for path in sorted(runtime.rglob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            target = node.func.value
            receiver = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if receiver == "client":
                name = node.func.attr
                if name == "get_paginator" and isinstance(node.args[0], ast.Constant):
                    name = str(node.args[0].value)
                found.add(name)
        if found:
            calls.setdefault(path.relative_to(runtime).parts[0].removesuffix(".py"), set()).update(found)
    return calls


#: boto3 operation -> the IAM actions it needs.
OPERATION_ACTIONS = {
    "put_item": {"dynamodb:PutItem"},
    "get_item": {"dynamodb:GetItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "query": {"dynamodb:Query"},
    "upload_file": {"s3:PutObject", "s3:AbortMultipartUpload"},  # managed multipart upload
    "download_file": {"s3:GetObject"},
    "put_object": {"s3:PutObject"},
    "get_object": {"s3:GetObject"},
    "list_objects_v2": {"s3:ListBucket"},
    "delete_objects": {"s3:DeleteObject"},
    "get_secret_value": {"secretsmanager:GetSecretValue"},
    "put_metric_data": {"cloudwatch:PutMetricData"},
    "translate_text": {"translate:TranslateText"},
    "send_message": {"sqs:SendMessage"},
}


def granted(*names: str) -> set[str]:
    actions: set[str] = set()
    for name in names:
        for statement in statements(RESOURCES[name]["Properties"]["PolicyDocument"]):
            actions.update(as_list(statement["Action"]))
    return actions


def test_the_job_role_is_granted_what_the_stage_runtime_calls() -> None:
    calls = runtime_client_calls()
    assert {"run_store", "lease", "object_store", "connections", "metrics", "translators"} <= set(calls)
    unknown = set().union(*calls.values()) - set(OPERATION_ACTIONS) - {"exceptions"}
    assert not unknown, f"map these boto3 calls to IAM actions: {unknown}"
    needed = {action for module, ops in calls.items() for op in ops for action in OPERATION_ACTIONS.get(op, set())}
    # The completion event is sent by publish_loaded, an Airflow task: the orchestrator's grant, not the job's.
    assert calls["completion_events"] == {"send_message"}
    job_needs = needed - {"sqs:SendMessage"}
    assert granted("StageRuntimePolicy", "TranslatePolicy") == job_needs
    assert granted("TranslatePolicy") == {"translate:TranslateText"}  # ETL_TRANSLATOR=amazon only
    for name in ("StageRuntimePolicy", "TranslatePolicy"):
        assert RESOURCES[name]["Properties"]["Roles"]["Fn::If"][1:] == [
            [{"Ref": "JobRole"}, {"Ref": "AirflowExecutionRoleName"}],
            [{"Ref": "JobRole"}],
        ]
    assert not [a for a in granted("StageRuntimePolicy") if a.split(":")[0] in {"sns", "sqs", "batch", "iam"}]
    orchestrator = granted("OrchestratorPolicy")
    assert {"sqs:SendMessage", "sns:Publish", "batch:SubmitJob", "batch:TerminateJob"} <= orchestrator


# -- moto: the deployed stack ------------------------------------------------------------------------
def document(value: Any) -> dict[str, Any]:
    """A policy document as moto returns it: a dict, JSON, or (inline role policies) a Python repr."""
    if isinstance(value, dict):
        return value
    try:
        return dict(json.loads(value))
    except json.JSONDecodeError:
        return dict(ast.literal_eval(value))


def moto_statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    # moto renders an AWS::NoValue element of a list as null; CloudFormation leaves it out.
    return [s for s in as_list(doc["Statement"]) if s is not None]


@pytest.fixture(scope="module")
def stack(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The full stack (survey included, the Airflow role attached) on a freshly reset moto server."""
    moto_server.reset()
    moto_server.configure_batch_without_docker()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_REGION", REGION)
        env.delenv("AWS_PROFILE", raising=False)
        trust = {
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "airflow.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]
        }
        boto3.client("iam").create_role(RoleName=AIRFLOW_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
        boto3.client("kinesis", region_name=REGION).create_stream(StreamName=CTR_STREAM, ShardCount=1)
        yield deploy(
            "entity-etl",
            REGION,
            {
                "AirflowExecutionRoleName": AIRFLOW_ROLE,
                "ConnectInstanceId": INSTANCE_ID,
                "CtrStreamName": CTR_STREAM,
                "CtrStreamKmsKeyId": CTR_KEY,
                "SurveyContactFlowId": FLOW_ID,
                "SurveySourcePhoneNumber": SOURCE_NUMBER,
                "PowertoolsLayerVersion": POWERTOOLS_VERSION,
            },
            tmp_path_factory.mktemp("lambda-zips"),
        )


moto = pytest.mark.moto


@moto
def test_the_stack_deploys_every_resource(stack: Stack) -> None:
    created = stack.resolve.created()
    assert set(created) == set(RESOURCES)  # the survey and every conditional part are on
    skipped = set(created) - stack.by_moto
    assert {created[name]["Type"] for name in skipped} == set(MOTO_LACKS), "update MOTO_LACKS (and the README)"
    assert set(stack.applied) == skipped  # ... and the test made each of them through its API


@moto
def test_deployed_tables_are_the_code_and_survey_definitions(stack: Stack) -> None:
    dynamodb = stack.client("dynamodb")
    for logical, (definition, _) in expected_tables().items():
        table = dynamodb.describe_table(TableName=stack.physical[logical])["Table"]
        assert table_view(table) == table_view(definition), logical
        assert table.get("DeletionProtectionEnabled", False) == RESOURCES[logical]["Properties"].get(
            "DeletionProtectionEnabled", False
        )
    assert stack.physical["RunsTable"] == stack.outputs["RunsTableName"] == "entity-etl-runs"
    assert stack.physical["LeasesTable"] == stack.outputs["LeasesTableName"] == "entity-etl-leases"
    # The stores work against the deployed tables.
    store = DynamoRunStore(stack.outputs["RunsTableName"], dynamodb)
    assert store.by_day("2026-11-01") == []
    lease = DynamoLeaseStore(stack.outputs["LeasesTableName"], dynamodb).acquire("de", "etl_de/r1", 60)
    assert lease.owner == "etl_de/r1"


@moto
def test_deployed_rules_are_the_eventbridge_file_and_target_the_topic(stack: Stack) -> None:
    events, sqs = stack.client("events"), stack.client("sqs")
    expected = {rule["Name"]: rule for rule in json.loads(RULES_FILE.read_text())["rules"]}
    deployed = {r["Name"]: r for r in events.list_rules(NamePrefix="entity-etl-batch-")["Rules"]}
    assert set(deployed) == set(expected)
    topic = stack.outputs["NotifyTopicArn"]
    dlq_arn = stack.resolve.attribute("NotificationsDeadLetterQueue", "Arn")
    target = {"Id": "notifications", "Arn": topic, "DeadLetterConfig": {"Arn": dlq_arn}}
    tap = sqs.create_queue(QueueName="rules-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name, rule in expected.items():
        assert json.loads(deployed[name]["EventPattern"]) == rule["EventPattern"]
        assert (deployed[name]["Description"], deployed[name]["State"]) == (rule["Description"], rule["State"])
        assert events.list_targets_by_rule(Rule=name)["Targets"] == [target]
        # moto's EventBridge delivers to SQS and logs only (an SNS target makes PutEvents fail): for the
        # sample events, an SQS queue stands in for the topic.
        events.remove_targets(Rule=name, Ids=["notifications"])
        events.put_targets(Rule=name, Targets=[{"Id": "tap", "Arn": tap_arn}])
    samples = [
        json.loads((NOTIFICATION_EVENTS / f"{n}.json").read_text())
        for n in ("batch-job-failed", "batch-job-queue-blocked")
    ]
    foreign = json.loads(json.dumps(samples[0]))
    foreign["detail"]["jobName"] = "nightly-report"
    entries = [
        {"Source": e["source"], "DetailType": e["detail-type"], "Detail": json.dumps(e["detail"])}
        for e in [*samples, foreign]
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    got: list[str] = []
    deadline = time.monotonic() + 20
    while len(got) < 2 and time.monotonic() < deadline:
        got += [
            json.loads(m["Body"])["detail-type"]
            for m in sqs.receive_message(QueueUrl=tap, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        ]
    assert sorted(got) == ["Batch Job Queue Blocked", "Batch Job State Change"]
    for name in expected:
        events.remove_targets(Rule=name, Ids=["tap"])
        events.put_targets(Rule=name, Targets=[target])
    # The topic lets exactly these rules publish (AWS::SNS::TopicPolicy, applied through the API).
    policy = json.loads(stack.client("sns").get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Resource"] == topic
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(r["Arn"] for r in deployed.values())
    # What EventBridge cannot publish goes to the notifications DLQ, whose policy (AWS::SQS::QueuePolicy,
    # applied through the API) lets exactly the two rules and the topic send to it.
    dlq_url = stack.outputs["NotificationsDeadLetterQueueUrl"]
    dlq_policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["Policy"])["Attributes"]["Policy"]
    )
    allowed = {
        s["Principal"]["Service"]: sorted(as_list(s["Condition"]["ArnEquals"]["aws:SourceArn"]))
        for s in dlq_policy["Statement"]
        if s["Effect"] == "Allow" and s["Action"] == "sqs:SendMessage" and s["Resource"] == dlq_arn
    }
    assert len(dlq_policy["Statement"]) == 2
    assert allowed == {
        "events.amazonaws.com": sorted(r["Arn"] for r in deployed.values()),
        "sns.amazonaws.com": [topic],
    }


def deployed_policies(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Every policy document the stack created: role inline policies and managed policies."""
    iam = stack.client("iam")
    found: dict[str, list[dict[str, Any]]] = {}
    for name, res in stack.resolve.created().items():
        if res["Type"] == "AWS::IAM::Role":
            role = stack.physical[name]
            for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
                doc = document(iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"])
                found[f"{name}/{policy}"] = moto_statements(doc)
        elif res["Type"] == "AWS::IAM::ManagedPolicy":
            arn = stack.physical[name]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            doc = document(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"])
            found[name] = moto_statements(doc)
    return found


def stack_arns(stack: Stack) -> set[str]:
    arns: set[str] = set()
    for name, res in stack.resolve.created().items():
        phys = stack.physical.get(name, "")  # the topic and bucket policies and the invoke config have none
        if phys.startswith("arn:"):
            arns.add(phys)
        if res["Type"] == "AWS::Logs::LogGroup":
            arns.add(f"arn:aws:logs:{stack.region}:{ACCOUNT}:log-group:{phys}")
        elif res["Type"] in ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::ECR::Repository"):
            arns.add(stack.resolve.attribute(name, "Arn"))
    return arns


@moto
def test_deployed_policies_are_least_privilege(stack: Stack) -> None:
    policies = deployed_policies(stack)
    assert len(policies) == 9
    own = stack_arns(stack)
    p = stack.resolve.params
    outside = {  # resources the template only names, from its parameters
        f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{p['CtrStreamName']}",
        f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{p['CtrStreamKmsKeyId']}",
        f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{p['ConnectInstanceId']}/contact/*",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{p['SecretsPrefix']}/*",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{p['TeamsWebhookSecretName']}-??????",
        f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{p['JobDefinitionName']}",
        f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{p['JobDefinitionName']}:*",
        f"arn:aws:batch:{REGION}:{ACCOUNT}:job/*",
    }
    for where, found in policies.items():
        for statement in found:
            assert statement["Effect"] == "Allow", where
            actions = as_list(statement["Action"])
            for action in actions:
                check_action(action, where)
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    assert set(actions) <= set(STAR_RESOURCE_EXCEPTIONS), (where, actions)
                    continue
                service = {a.split(":")[0] for a in actions}
                assert len(service) == 1, (where, actions)
                (prefix,) = service
                scope = "arn:aws:s3:::" if prefix == "s3" else f"arn:aws:{prefix}:{REGION}:{ACCOUNT}:"
                assert resource.startswith(scope), (where, resource)
                assert resource in outside or any(
                    resource == arn or resource.startswith((f"{arn}/", f"{arn}:")) for arn in own
                ), f"{where}: {resource} is not one of the stack's resources"
    # The secrets the stack created are exactly what the roles may read.
    secrets = stack.client("secretsmanager")
    teams = secrets.describe_secret(SecretId=stack.physical["TeamsWebhookSecret"])["ARN"]
    target = secrets.describe_secret(SecretId=stack.physical["EtlTargetConnectionSecret"])["ARN"]
    assert fnmatch.fnmatchcase(
        teams, f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{p['TeamsWebhookSecretName']}-??????"
    )
    assert fnmatch.fnmatchcase(target, f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{p['SecretsPrefix']}/*")
    for arn in (teams, target):
        with pytest.raises(secrets.exceptions.ResourceNotFoundException):
            secrets.get_secret_value(SecretId=arn)  # created empty


@moto
def test_survey_roles_are_the_policy_files(stack: Stack) -> None:
    policies = deployed_policies(stack)
    iam = stack.client("iam")
    trust = filled(SURVEY_INFRA / "iam" / "lambda-trust.json")
    for role, name in [
        ("ProcessCtrStreamRole", "process-ctr-stream"),
        ("UpdateSurveyResultRole", "update-survey-result"),
        ("RetrieveCustomerNameRole", "retrieve-customer-name"),
    ]:
        expected = filled(SURVEY_INFRA / "iam" / f"{name}.policy.json")
        assert policies[f"{role}/{name}"] == expected["Statement"], role
        assert document(iam.get_role(RoleName=stack.physical[role])["Role"]["AssumeRolePolicyDocument"]) == trust
    assert policies["NpsReaderPolicy"] == filled(SURVEY_INFRA / "iam" / "nps-dag-reader.policy.json")["Statement"]


@moto
def test_the_airflow_role_and_the_job_role_get_their_policies(stack: Stack) -> None:
    iam = stack.client("iam")

    def attached(role: str) -> set[str]:
        return {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]}

    runtime, translate = stack.outputs["StageRuntimePolicyArn"], stack.outputs["TranslatePolicyArn"]
    airflow = {runtime, translate, stack.outputs["OrchestratorPolicyArn"], stack.outputs["NpsReaderPolicyArn"]}
    assert attached(AIRFLOW_ROLE) == airflow
    assert attached(stack.physical["JobRole"]) == {runtime, translate}
    assert iam.list_role_policies(RoleName=stack.physical["JobRole"])["PolicyNames"] == []


def settings_env(stack: Stack) -> dict[str, str]:
    return dict(json.loads(stack.outputs["EtlEnvironment"]))


@moto
def test_outputs_give_every_deployment_setting(stack: Stack) -> None:
    env = settings_env(stack)
    plugin_text = "\n".join(p.read_text() for p in (ROOT / "plugins").rglob("*.py"))
    for name in env:
        assert f'"{name}"' in plugin_text or f"``{name}``" in plugin_text, f"{name} is not a setting the code reads"
    assert set(FORWARDED_ENV) - {"ETL_LEASE_TTL_S"} <= set(env)
    assert env["ETL_OBJECT_STORE_URL"] == stack.outputs["ObjectStoreUrl"] == f"s3://{stack.physical['DataBucket']}/etl"
    # deploy/mwaa/deploy.py puts the entity files and SQL under dags/include/ of the bucket it is given.
    assert "s3://BUCKET/dags/include/" in (ROOT / "deploy/mwaa/deploy.py").read_text()
    assert env["ETL_INCLUDE_URL"] == stack.outputs["IncludeUrl"] == f"s3://{stack.physical['DataBucket']}/dags/include"
    assert env["ETL_RUNS_TABLE"] == stack.physical["RunsTable"]
    assert env["ETL_LEASES_TABLE"] == stack.physical["LeasesTable"]
    assert env["ETL_COMPLETION_QUEUE_URL"] == stack.outputs["CompletionQueueUrl"] == stack.physical["CompletionQueue"]
    assert env["ETL_NOTIFY_TOPIC_ARN"] == stack.outputs["NotifyTopicArn"] == stack.physical["AlertsTopic"]
    assert env["SURVEY_RESPONSES_TABLE"] == stack.outputs["SurveyResponsesTableName"] == "SurveyResponses"
    assert (env["ETL_STATE_STORE"], env["ETL_SECRETS_BACKEND"], env["ETL_METRICS"]) == ("dynamodb", "aws", "cloudwatch")
    # Every output: moto's value is the template's (resolved here); those moto could not render name
    # resources it skipped, and resolve to what the API created.
    for name, output in TEMPLATE["Outputs"].items():
        if "Condition" in output and not stack.resolve.condition(output["Condition"]):
            continue
        value = stack.resolve(output["Value"])
        if references(output["Value"]) & set(stack.applied):
            assert name not in stack.outputs and value == stack.physical[next(iter(references(output["Value"])))]
        else:
            assert stack.outputs[name] == value, name
    # The entity files' defaults name this stack's queue and job definition.
    defaults = yaml.safe_load((ROOT / "include/entities/_defaults.yaml").read_text())["compute"]
    assert (defaults["job_queue"], defaults["job_definition"]) == (
        stack.outputs["JobQueueName"],
        stack.outputs["JobDefinitionName"],
    )


@moto
def test_a_stage_job_runs_on_the_deployed_queue_and_definition(stack: Stack) -> None:
    batch = stack.client("batch")
    (definition,) = batch.describe_job_definitions(
        jobDefinitionName=stack.outputs["JobDefinitionName"], status="ACTIVE"
    )["jobDefinitions"]
    container = definition["containerProperties"]
    image = f"{stack.outputs['StageRepositoryUri']}:{stack.params['ImageTag']}"
    assert container["image"] == image
    assert container["jobRoleArn"].endswith(f"/{stack.physical['JobRole']}")
    assert container["executionRoleArn"].endswith(f"/{stack.physical['JobExecutionRole']}")
    assert {r["type"]: str(r["value"]) for r in container["resourceRequirements"]} == {"VCPU": "1", "MEMORY": "2048"}
    assert container["networkConfiguration"] == {"assignPublicIp": "DISABLED"}
    assert container["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    assert container["logConfiguration"]["options"]["awslogs-group"] == stack.outputs["BatchJobLogGroupName"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert set(environment) <= set(FORWARDED_ENV)  # the job gets deployment settings only
    assert environment == {k: v for k, v in settings_env(stack).items() if k in FORWARDED_ENV}
    groups = stack.client("logs").describe_log_groups(logGroupNamePrefix=stack.outputs["BatchJobLogGroupName"])
    assert [g["retentionInDays"] for g in groups["logGroups"]] == [90]
    (environment_,) = batch.describe_compute_environments()["computeEnvironments"]
    assert environment_["computeResources"]["type"] == "FARGATE"
    assert environment_["computeResources"]["subnets"] == stack.params["SubnetIds"].split(",")
    (queue,) = batch.describe_job_queues(jobQueues=[stack.outputs["JobQueueName"]])["jobQueues"]
    assert queue["computeEnvironmentOrder"] == [
        {"order": 1, "computeEnvironment": environment_["computeEnvironmentArn"]}
    ]

    # What the batch backend submits, on what the stack deployed (moto's Batch without Docker runs it at once).
    compute = ComputeConfig(job_queue=stack.outputs["JobQueueName"], job_definition=stack.outputs["JobDefinitionName"])
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    job = batch.submit_job(
        jobName=batch_job_name("de", "extract", "scheduled__2026-11-01"),
        jobQueue=compute.job_queue,
        jobDefinition=compute.job_definition,
        containerOverrides=container_overrides(
            compute, stage_command("de", "extract", "scheduled__2026-11-01", start, start + dt.timedelta(days=1))
        ),
    )
    deadline = time.monotonic() + 30
    while (status := batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]["status"]) not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status == "SUCCEEDED"


def test_the_lambda_zips_run_on_their_own(tmp_path: Path) -> None:
    """Each zip holds what its handler imports: the files it shares with entity_etl are copies (not
    symlinks), and the notifications handler, unzipped alone, imports and builds a card without
    Airflow or entity_etl."""
    zips = package_lambdas()
    lambda_dir = ROOT / "lambdas" / "notifications"
    with zipfile.ZipFile(io.BytesIO(zips.notifications_zip())) as archive:
        names = set(archive.namelist())
        assert names == {path.name for path in lambda_dir.glob("*.py")}
        assert (
            archive.read("notification_contract.py")
            == (ROOT / "plugins/entity_etl/notification_contract.py").read_bytes()
        )
        assert archive.read("redaction.py") == (ROOT / "plugins/entity_etl/runtime/redaction.py").read_bytes()
        archive.extractall(tmp_path / "notifications")
    with zipfile.ZipFile(io.BytesIO(zips.survey_zip())) as archive:
        assert archive.read("survey/responses.py") == (ROOT / "plugins/entity_etl/survey_reader.py").read_bytes()
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'entity_etl', 'lambdas'):\n"
        "            raise ImportError(name + ' is not in the Lambda package')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    event = (NOTIFICATION_EVENTS / "batch-job-failed.json").read_text()
    script = (
        "import json, sys, handler\n"
        "card, fields = handler.build_card(sys.stdin.read())\n"
        "print(json.dumps([card['attachments'][0]['content']['body'][0]['text'], fields['kind']]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=event,
        cwd=tmp_path / "notifications",
        env={"PYTHONPATH": f"{tmp_path / 'blocker'}:{tmp_path / 'notifications'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    title, kind = json.loads(proc.stdout)
    assert title.startswith("❌ AWS Batch job failed") and kind == "Batch Job State Change"


@moto
def test_lambdas_mapping_and_permissions(stack: Stack) -> None:
    lam, sqs = stack.client("lambda"), stack.client("sqs")
    zips = package_lambdas()
    functions = {f["FunctionName"]: f for f in lam.list_functions()["Functions"]}
    spec = {e["Function"]["FunctionName"]: e["Function"] for e in filled(SURVEY_INFRA / "functions.json")}
    assert set(functions) == {*spec, stack.outputs["NotificationsFunctionName"]}
    survey_sha = base64.b64encode(hashlib.sha256(zips.survey_zip()).digest()).decode()
    for name, function in spec.items():
        deployed = functions[name]
        for key in ("Description", "Runtime", "Handler", "Timeout", "MemorySize", "Environment"):
            assert deployed[key] == function[key], (name, key)
        assert deployed["CodeSha256"] == survey_sha, name
        module = function["Handler"].split(".")[1]
        with zipfile.ZipFile(io.BytesIO(zips.survey_zip())) as archive:
            assert f"survey/{module}.py" in archive.namelist()
    notifications = functions[stack.outputs["NotificationsFunctionName"]]
    assert notifications["Handler"] == "handler.handler" and notifications["Timeout"] == 60
    assert notifications["CodeSha256"] == base64.b64encode(hashlib.sha256(zips.notifications_zip()).digest()).decode()
    assert notifications["Environment"]["Variables"] == {
        "TEAMS_WEBHOOK_SECRET_ID": stack.params.get("TeamsWebhookSecretName", "teams/entity-etl-webhook"),
        "DEAD_LETTER_QUEUE_URL": stack.outputs["NotificationsDeadLetterQueueUrl"],
        "LOG_LEVEL": "INFO",
    }
    dlq_arn = stack.resolve.attribute("NotificationsDeadLetterQueue", "Arn")
    invoke = lam.get_function_event_invoke_config(FunctionName=notifications["FunctionName"])
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == dlq_arn
    (subscription,) = stack.client("sns").list_subscriptions_by_topic(TopicArn=stack.outputs["NotifyTopicArn"])[
        "Subscriptions"
    ]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("lambda", notifications["FunctionArn"])
    attributes = stack.client("sns").get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])
    assert json.loads(attributes["Attributes"]["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn}
    (sns_permission,) = json.loads(lam.get_policy(FunctionName=notifications["FunctionName"])["Policy"])["Statement"]
    assert sns_permission["Principal"] == {"Service": "sns.amazonaws.com"}
    assert sns_permission["Condition"]["ArnLike"]["AWS:SourceArn"] == stack.outputs["NotifyTopicArn"]

    (mapping,) = lam.list_event_source_mappings(FunctionName="survey-process-ctr-stream")["EventSourceMappings"]
    expected = filled(SURVEY_INFRA / "event-source-mapping.json")
    for key in set(expected) - {"FunctionName", "Enabled"}:
        assert mapping[key] == expected[key], key
    assert mapping["State"] == "Enabled"
    assert mapping["FunctionArn"].endswith(":function:survey-process-ctr-stream")
    for permission in filled(SURVEY_INFRA / "iam" / "connect-invoke-permissions.json"):
        (statement,) = json.loads(lam.get_policy(FunctionName=permission["FunctionName"])["Policy"])["Statement"]
        assert statement["Principal"] == {"Service": permission["Principal"]}
        assert statement["Action"] == permission["Action"]
        assert statement["Condition"] == {
            "ArnLike": {"AWS:SourceArn": permission["SourceArn"]},
            "StringEquals": {"AWS:SourceAccount": permission["SourceAccount"]},
        }
    for url in (stack.outputs["CompletionQueueUrl"], stack.outputs["SurveyCtrFailuresQueueUrl"]):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["SqsManagedSseEnabled"] == "true" and attributes["MessageRetentionPeriod"] == "1209600"
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=stack.outputs["CompletionQueueUrl"], AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )
    assert redrive == {
        "deadLetterTargetArn": stack.resolve.attribute("CompletionDeadLetterQueue", "Arn"),
        "maxReceiveCount": 5,
    }


@moto
def test_the_bucket_and_repository(stack: Stack) -> None:
    s3 = stack.client("s3")
    bucket = stack.outputs["BucketName"]
    assert bucket == f"entity-etl-{ACCOUNT}-{REGION}"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (tls,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert tls["Effect"] == "Deny" and sorted(tls["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    (repository,) = stack.client("ecr").describe_repositories(repositoryNames=[stack.physical["StageRepository"]])[
        "repositories"
    ]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["repositoryUri"] == stack.outputs["StageRepositoryUri"]


@moto
def test_without_connect_the_survey_is_left_out(stack: Stack, tmp_path: Path) -> None:
    # Another region of the same moto server, so the full stack stays as it is for the other tests.
    minimal = deploy("etl-minimal", OTHER_REGION, {"NamePrefix": "etl-min", "Translator": "glossary"}, tmp_path)
    created = minimal.resolve.created()
    survey = {name for name, res in RESOURCES.items() if res.get("Condition") == "DeploySurvey"}
    assert survey and not survey & set(created)
    assert set(minimal.physical) | set(minimal.applied) == set(created)
    assert not {k for k in minimal.outputs if k.startswith(("Survey", "UpdateSurvey", "RetrieveCustomer"))}
    assert "SURVEY_RESPONSES_TABLE" not in settings_env(minimal)
    policies = deployed_policies(minimal)
    actions = {a for found in policies.values() for s in found for a in as_list(s["Action"])}
    assert "translate:TranslateText" not in actions and "TranslatePolicyArn" not in minimal.outputs
    assert not [s for found in policies.values() for s in found if "Survey" in json.dumps(s)]
    assert minimal.client("lambda").list_functions()["Functions"][0]["FunctionName"] == "etl-min-teams-notifications"
    assert set(policies) == {
        f"{r}/{p}"
        for r, p in [("JobExecutionRole", "pull-image-and-log"), ("NotificationsRole", "teams-notifications")]
    } | {"StageRuntimePolicy", "OrchestratorPolicy"}
    # Without AirflowExecutionRoleName nothing is attached to the Airflow role (it keeps the full stack's four).
    attached = minimal.client("iam").list_attached_role_policies(RoleName=AIRFLOW_ROLE)["AttachedPolicies"]
    assert len(attached) == 4
    assert minimal.outputs["StageRuntimePolicyArn"] not in {p["PolicyArn"] for p in attached}
