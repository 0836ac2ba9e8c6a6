"""Least privilege in the template: no wildcard action, ``logs:`` only ``CreateLogStream``/``PutLogEvents``,
no ``Resource: "*"`` but for the actions in ``STAR_RESOURCE_EXCEPTIONS``, every other resource scoped to
this account and region and to the stack's own resources (or a parameter naming an outside one); the
job role granted what the stage runtime calls."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

from support.cloudformation_checks import STAR_RESOURCE_EXCEPTIONS, as_list, check_action, of_type, references
from support.cloudformation_stack import (
    RESOURCES,
    ROOT,
)

#: Deny statements (they grant nothing) that name a wildcard, and why.
DENY_EXCEPTIONS = {"TlsOnly": "the bucket refuses every S3 call without TLS, whoever makes it"}


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
