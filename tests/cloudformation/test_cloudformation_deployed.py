"""The template deployed with ``create_stack`` to a real moto server (twice: with the survey and without).

moto's CloudFormation (5.2) has no model for ``MOTO_LACKS`` (it skips them with a warning): after the
deploy, ``support/cloudformation_stack.py`` (the deployer and the template's ``Resolver``) creates each
of them through its service API with the template's own properties, resolved against the deployed stack,
and the tests check the result."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import fnmatch
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.batch.job_spec import FORWARDED_ENV, batch_job_name, container_overrides, stage_command
from entity_etl.runtime.lease import DynamoLeaseStore
from entity_etl.runtime.run_store import DynamoRunStore
from support.cloudformation_checks import (
    NOTIFICATION_EVENTS,
    RULES_FILE,
    STAR_RESOURCE_EXCEPTIONS,
    SURVEY_INFRA,
    as_list,
    check_action,
    expected_tables,
    references,
    table_view,
)
from support.cloudformation_stack import (
    ACCOUNT,
    MOTO_LACKS,
    REGION,
    RESOURCES,
    ROOT,
    TEMPLATE,
    Stack,
    deploy,
    package_lambdas,
)
from support.servers import MotoServer

OTHER_REGION = "eu-central-1"


INSTANCE_ID = "aaaaaaaa-bbbb-cccc-dddd-111111111111"


FLOW_ID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"


SOURCE_NUMBER = "+442079460000"


CTR_STREAM = "connect-ctr"


CTR_KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"


POWERTOOLS_VERSION = "18"


AIRFLOW_ROLE = "airflow-execution"


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
