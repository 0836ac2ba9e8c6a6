"""``lambdas/notifications/batch_card.py`` and ``deploy/eventbridge/``: the documented sample Batch events to
cards, and the rules on moto's EventBridge (an SQS target: moto lacks ``TestEventPattern`` and SNS
delivery) routing exactly the Batch failures."""

from __future__ import annotations

import json
from types import ModuleType

import boto3
import pytest

from support.notify_events import REGION, RULES_FILE, RUN_ID, cloudwatch_url, drain
from support.teams_webhook import LambdaContext, Webhook, actions, card_content, facts, sample, sns_event, unescape

pytestmark = pytest.mark.moto


def test_batch_samples_become_cards(teams: str, webhook: Webhook, lam: ModuleType) -> None:
    failed, blocked = sample("batch-job-failed"), sample("batch-job-queue-blocked")
    for event in (failed, blocked):
        assert lam.handler(sns_event(json.dumps(event)), LambdaContext()) == {"delivered": 1, "dead_lettered": 0}
    failed_card, blocked_card = (card_content(request) for request in webhook.requests)

    job = failed["detail"]
    assert unescape(failed_card["body"][0]["text"]) == f"❌ AWS Batch job failed: {job['jobName']}"
    assert facts(failed_card) == {
        "Entity": "de",
        "Stage": "extract",
        "Run": RUN_ID,
        "Job": job["jobName"],
        "Job queue": "etl-fargate",
        "Status reason": "Essential container in task exited",
        "Exit code": "1",
        "Attempts": "1",
        "Region": REGION,
    }
    assert actions(failed_card) == {
        "CloudWatch logs": cloudwatch_url(job["container"]["logStreamName"]),
        "Batch job": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{job['jobId']}",
    }

    job = blocked["detail"]
    assert blocked_card["body"][0]["text"] == "⚠️ AWS Batch job queue blocked: etl-fargate"
    assert facts(blocked_card) == {
        "Entity": "jp",
        "Stage": "load_staging",
        "Run": "scheduled__2026-10-26T00:00:00+00:00",
        "Job": job["jobName"],
        "Job queue": "etl-fargate",
        "Status": "RUNNABLE",
        "Blocked because": job["statusReason"],
        "Region": REGION,
    }
    assert actions(blocked_card) == {
        "Job queue": f"https://console.aws.amazon.com/batch/home?region={REGION}#queues/detail/{job['jobQueue']}",
        "Batch job": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{job['jobId']}",
    }


def test_rule_patterns_route_exactly_the_batch_failures(teams: str, webhook: Webhook, lam: ModuleType) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    tap = sqs.create_queue(QueueName="batch-failures-tap")["QueueUrl"]
    tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = json.loads(RULES_FILE.read_text())["rules"]
    assert {rule["Name"] for rule in rules} == {"entity-etl-batch-job-failed", "entity-etl-batch-job-queue-blocked"}
    for rule in rules:
        events.put_rule(
            Name=rule["Name"],
            Description=rule["Description"],
            State=rule["State"],
            EventPattern=json.dumps(rule["EventPattern"]),
        )
        events.put_targets(Rule=rule["Name"], Targets=[{"Id": "notifications", "Arn": tap_arn}])

    failed, blocked = sample("batch-job-failed"), sample("batch-job-queue-blocked")
    succeeded = json.loads(json.dumps(failed))
    succeeded["detail"].update(status="SUCCEEDED", jobId="a1" * 16)
    foreign_failure = json.loads(json.dumps(failed))
    foreign_failure["detail"].update(jobName="nightly-report", jobId="b2" * 16)
    foreign_block = json.loads(json.dumps(blocked))
    foreign_block["detail"].update(jobName="ml-training", jobId="c3" * 16)
    not_batch = {**failed, "source": "my.app"}
    sent = [failed, succeeded, foreign_failure, blocked, foreign_block, not_batch]
    response = events.put_events(
        Entries=[
            {
                "Source": e["source"],
                "DetailType": e["detail-type"],
                "Detail": json.dumps(e["detail"]),
                "Resources": e["resources"],
            }
            for e in sent
        ]
    )
    assert response["FailedEntryCount"] == 0

    delivered = [m["body"] for m in drain(tap, expect=2)]
    assert sorted((e["detail-type"], e["detail"]["jobId"]) for e in delivered) == sorted(
        [("Batch Job State Change", failed["detail"]["jobId"]), ("Batch Job Queue Blocked", blocked["detail"]["jobId"])]
    )
    # What EventBridge delivered (its envelope, as SNS passes it on) is what the Lambda formats.
    for event in delivered:
        assert event["source"] == "aws.batch" and event["region"] == REGION
        assert lam.handler(sns_event(json.dumps(event)), LambdaContext()) == {"delivered": 1, "dead_lettered": 0}
    titles = sorted(unescape(card_content(request)["body"][0]["text"]) for request in webhook.requests)
    assert titles == sorted(
        [f"❌ AWS Batch job failed: {failed['detail']['jobName']}", "⚠️ AWS Batch job queue blocked: etl-fargate"]
    )
