"""deploy/cloudformation/entity-etl.yaml against the code and the definition files: the run-store and
lease tables (``table_definition()``), the survey tables and functions (``lambdas/survey/infra/``), the
EventBridge rules (``deploy/eventbridge/batch-failures.json``), the properties moto drops, no secret value.

moto's CloudFormation drops some properties of the types it creates (``MOTO_DROPS``, e.g. DynamoDB
point-in-time recovery, S3 versioning, Lambda layers): those are checked here, on the template itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import entity_etl.runtime.lease as lease_module
from entity_etl.orchestration.batch.job_spec import batch_job_name
from support.cloudformation_checks import RULES_FILE, SURVEY_INFRA, expected_tables, of_type, survey_tables, table_view
from support.cloudformation_stack import (
    RESOURCES,
    TEMPLATE,
    TEMPLATE_PATH,
)

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


def survey_json(path: Path) -> Any:
    """A survey infra file as written (Fn::Sub placeholders left in), ``arn:${AWS::Partition}`` style."""
    return json.loads(path.read_text().replace("arn:aws:", "arn:${AWS::Partition}:"))


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
