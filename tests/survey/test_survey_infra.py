"""``lambdas/survey/infra/``: the table, IAM, event-source-mapping and function definitions against the
code (policies validated on moto's IAM), and the handlers' dependencies (boto3 and Powertools only)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import validate_parameters
from lambdas.survey import responses
from lambdas.survey.settings import CallbackSettings, CustomerLookupSettings, ResultSettings

from support.servers import MotoServer
from support.survey_lambdas import (
    ACCOUNT,
    CUSTOMER_TABLE,
    FLOW_ID,
    INFRA,
    INSTANCE_ID,
    MARKER_TABLE,
    REGION,
    RESPONSES_TABLE,
    SOURCE_NUMBER,
    SURVEY_DIR,
    table_specs,
)

pytestmark = pytest.mark.moto


TABLES = {spec["TableName"] for spec in table_specs().values() if "KeySchema" in spec}


PLACEHOLDERS = {
    "${AWS::Region}": REGION,
    "${AWS::AccountId}": ACCOUNT,
    "${ConnectInstanceId}": INSTANCE_ID,
    "${CtrStreamName}": "connect-ctr",
    "${CtrStreamKmsKeyId}": "1234abcd-12ab-34cd-56ef-1234567890ab",
    "${SurveyContactFlowId}": FLOW_ID,
    "${SurveySourcePhoneNumber}": SOURCE_NUMBER,
    "${PowertoolsLayerVersion}": "18",
}


def filled(path: Path) -> Any:
    text = path.read_text()
    for placeholder in set(re.findall(r"\$\{[^}]+\}", text)):
        assert placeholder in PLACEHOLDERS, f"{path.name}: undocumented placeholder {placeholder}"
        text = text.replace(placeholder, PLACEHOLDERS[placeholder])
    return json.loads(text)


def test_the_tables_match_what_the_code_reads_and_writes(survey: None) -> None:
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=RESPONSES_TABLE)["Table"]
    assert table["KeySchema"] == [{"AttributeName": responses.TABLE_KEY, "KeyType": "HASH"}]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == responses.DATE_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": responses.DATE_KEY, "KeyType": "HASH"},
        {"AttributeName": responses.TIME_KEY, "KeyType": "RANGE"},
    ]
    assert tuple(index["Projection"]["NonKeyAttributes"]) == responses.INDEX_ATTRIBUTES
    customer = dynamodb.describe_table(TableName=CUSTOMER_TABLE)["Table"]
    assert customer["KeySchema"] == [{"AttributeName": "PhoneNumber", "KeyType": "HASH"}]
    ttl = dynamodb.describe_time_to_live(TableName=MARKER_TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}  # Powertools' expiry attribute
    assert {CUSTOMER_TABLE, RESPONSES_TABLE, MARKER_TABLE} == TABLES


POLICIES = sorted((INFRA / "iam").glob("*.policy.json"))


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policies_are_least_privilege_and_valid(aws: MotoServer, path: Path) -> None:
    document = filled(path)
    for statement in document["Statement"]:
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        for action in actions:
            assert "*" not in action, f"{path.name}: wildcard action {action}"
        for resource in resources:
            assert resource != "*" and resource.startswith("arn:aws:"), f"{path.name}: {resource}"
            assert f":{ACCOUNT}:" in resource and f":{REGION}:" in resource
            if resource.startswith("arn:aws:dynamodb:"):
                assert resource.split(":table/")[1].split("/")[0] in TABLES
        if any(action.startswith("logs:") for action in actions):
            assert set(actions) == {"logs:CreateLogStream", "logs:PutLogEvents"}
            assert all(r.endswith(":*") and ":log-group:/aws/lambda/survey-" in r for r in resources)
    # moto's IAM checks the document's grammar as AWS does.
    boto3.client("iam").create_policy(PolicyName=path.name.split(".")[0], PolicyDocument=json.dumps(document))


def test_each_function_is_granted_exactly_what_its_code_calls() -> None:
    def actions(name: str) -> set[str]:
        document = filled(INFRA / "iam" / f"{name}.policy.json")
        found: set[str] = set()
        for statement in document["Statement"]:
            found.update([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        return found

    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    kinesis = {"kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords"}
    kinesis |= {"kinesis:GetShardIterator", "kinesis:ListShards"}
    markers = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}  # Powertools
    assert actions("process-ctr-stream") == logs | kinesis | markers | {
        "kms:Decrypt",
        "connect:StartOutboundVoiceContact",
        "sqs:SendMessage",  # the event source mapping's on-failure destination
    }
    # The transaction, the customer item's read (SurveyData is bounded) and the stored answer's (a repeat).
    assert actions("update-survey-result") == logs | {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"}
    assert actions("retrieve-customer-name") == logs | {"dynamodb:GetItem"}
    assert actions("nps-dag-reader") == {"dynamodb:Query"}
    reader = filled(INFRA / "iam" / "nps-dag-reader.policy.json")["Statement"][0]["Resource"]
    assert reader.endswith(f":table/{RESPONSES_TABLE}/index/{responses.DATE_INDEX}")


def test_the_event_source_mapping_is_a_valid_request_with_the_safety_settings() -> None:
    mapping = filled(INFRA / "event-source-mapping.json")
    lambda_client = boto3.client("lambda", region_name=REGION)
    validate_parameters(
        mapping, lambda_client.meta.service_model.operation_model("CreateEventSourceMapping").input_shape
    )
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 10
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"].startswith("arn:aws:sqs:")
    functions = {entry["Function"]["FunctionName"]: entry for entry in filled(INFRA / "functions.json")}
    ctr_env = functions[mapping["FunctionName"]]["Function"]["Environment"]["Variables"]
    # Records older than the call-back window are not worth retrying; the markers outlive them.
    assert mapping["MaximumRecordAgeInSeconds"] == int(ctr_env["SURVEY_MAX_CALLBACK_DELAY_S"])
    assert mapping["MaximumRecordAgeInSeconds"] < int(ctr_env["CALLBACK_MARKER_TTL_S"])


def test_the_function_definitions_configure_real_handlers() -> None:
    lambda_client = boto3.client("lambda", region_name=REGION)
    shape = lambda_client.meta.service_model.operation_model("CreateFunction").input_shape
    settings: dict[str, type[CallbackSettings] | type[ResultSettings] | type[CustomerLookupSettings]] = {
        "process_ctr_stream": CallbackSettings,
        "update_survey_result": ResultSettings,
        "retrieve_customer_name": CustomerLookupSettings,
    }
    entries = filled(INFRA / "functions.json")
    assert len(entries) == 3
    for entry in entries:
        function = entry["Function"]
        request = {
            **function,
            "Role": f"arn:aws:iam::{ACCOUNT}:role/{function['FunctionName']}",
            "Code": {"ZipFile": b"x"},
        }
        validate_parameters(request, shape)
        package, module, attribute = function["Handler"].split(".")
        assert package == "survey" and attribute == "handler"
        assert (INFRA / entry["Policy"]).exists()
        assert function["FunctionName"] in json.dumps(filled(INFRA / entry["Policy"]))  # its own log group
        settings[module].from_env(function["Environment"]["Variables"])  # the environment is complete and valid


def test_the_handlers_need_only_boto3_and_powertools(tmp_path: Path) -> None:
    """Loaded as the Lambda runtime loads them (package ``survey`` at the zip's root): no Airflow, no
    entity_etl, and no third-party import beyond boto3 and AWS Lambda Powertools."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'entity_etl', 'pydantic', 'lambdas'):\n"
        "            raise ImportError(name + ' is not in the Lambda package')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    script = (
        "import sys, json\n"
        "import survey.process_ctr_stream, survey.update_survey_result, survey.retrieve_customer_name\n"
        "import survey.responses\n"
        "top = {m.split('.')[0] for m in sys.modules if not m.startswith('_')}\n"
        "third_party = sorted(top - set(sys.stdlib_module_names) - {'survey', 'sitecustomize'})\n"
        "print(json.dumps(third_party))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": f"{tmp_path}:{SURVEY_DIR.parent}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    allowed = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "aws_lambda_powertools"}
    allowed |= {"typing_extensions", "certifi", "charset_normalizer", "idna"}
    imported = set(json.loads(proc.stdout))
    assert imported <= allowed, imported - allowed
    assert {"boto3", "aws_lambda_powertools"} <= imported
