"""What the CloudFormation suites share besides the deployer (``support/cloudformation_stack.py``): the
template's resources by type, the survey definition files filled in, the properties moto drops, and
the least-privilege rules (statements, references, the allowed exceptions)."""

from __future__ import annotations

import json
import re
from typing import Any

from entity_etl.runtime.lease import DynamoLeaseStore
from entity_etl.runtime.run_store import DynamoRunStore
from support.cloudformation_stack import (
    RESOURCES,
    ROOT,
)

RULES_FILE = ROOT / "deploy" / "eventbridge" / "batch-failures.json"


SURVEY_INFRA = ROOT / "lambdas" / "survey" / "infra"


NOTIFICATION_EVENTS = ROOT / "lambdas" / "notifications" / "events"


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


#: The only logs: actions a role gets: writing to its own log group (the template creates the groups).
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in RESOURCES.items() if res["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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
