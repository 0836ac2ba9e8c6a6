"""``orchestration/notify/batch_section.py`` and ``orchestration/batch/diagnosis.py``: a failed AWS Batch
job's details (moto, and ``Stubber`` for what moto's Batch never reports), and the real stage operator
failing on Batch to a Teams card with links to Airflow and the job's log."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import boto3
import pytest

from entity_etl.orchestration.notifier import (
    SnsEventNotifier,
    batch_failure_details,
)
from support.batch_failures import create_batch_queue, described, stubbed_batch
from support.notify_events import REGION, RUN_ID, RUN_URL, TaskInstance, cloudwatch_url, context, published, sns_tap
from support.servers import MotoServer
from support.teams_webhook import LambdaContext, Webhook, actions, card_content, facts, sns_event, teams_setup

pytestmark = pytest.mark.moto


def test_batch_failure_details_reads_the_failed_job(failing_aws: MotoServer) -> None:
    create_batch_queue()
    batch = boto3.client("batch")
    job_id = batch.submit_job(jobName="etl-de-extract-x", jobQueue="etl-fargate", jobDefinition="etl-stage")["jobId"]
    batch.terminate_job(jobId=job_id, reason="Essential container in task exited")

    details = batch_failure_details(job_id)
    stream = f"etl-stage/default/{job_id}"
    assert details == {
        "jobId": job_id,
        "jobName": "etl-de-extract-x",
        "jobQueue": f"arn:aws:batch:{REGION}:123456789012:job-queue/etl-fargate",
        "status": "FAILED",
        "statusReason": "Essential container in task exited",
        "exitCode": None,  # moto's Batch without Docker runs no container
        "containerReason": None,
        "logGroup": "/aws/batch/job",
        "logStreamName": stream,
        "logUrl": cloudwatch_url(stream),
        "jobUrl": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{job_id}",
    }
    with pytest.raises(LookupError, match="no job 00000000-0000-0000-0000-000000000000"):
        batch_failure_details("00000000-0000-0000-0000-000000000000")


def test_batch_failure_details_carry_the_exit_code_and_the_container_reason() -> None:
    batch, stub = stubbed_batch()
    stream = "etl-stage/default/abc"
    container = {
        "exitCode": 137,
        "reason": "OutOfMemoryError: Container killed due to memory usage",
        "logStreamName": stream,
    }
    stub.add_response(
        "describe_jobs",
        described("job-1", statusReason="Essential container in task exited", container=container),
        {"jobs": ["job-1"]},
    )
    with stub:
        details = batch_failure_details("job-1", client=batch)
    stub.assert_no_pending_responses()
    assert (details["exitCode"], details["containerReason"]) == (137, container["reason"])
    assert details["statusReason"] == "Essential container in task exited"
    assert details["logUrl"] == cloudwatch_url(stream) and "failedChildJobId" not in details


def test_a_failed_array_job_is_explained_by_its_first_failed_child() -> None:
    batch, stub = stubbed_batch()
    stream = "etl-stage/default/child3"
    stub.add_response(
        "describe_jobs",
        described(
            "parent", statusReason="Array child failed", arrayProperties={"size": 4, "statusSummary": {"FAILED": 1}}
        ),
        {"jobs": ["parent"]},
    )
    stub.add_response(
        "list_jobs",
        {"jobSummaryList": [{"jobId": "parent:3", "jobName": "etl-de-extract-x", "status": "FAILED"}]},
        {"arrayJobId": "parent", "jobStatus": "FAILED"},
    )
    child = {"exitCode": 1, "logStreamName": stream}
    stub.add_response(
        "describe_jobs",
        described("parent:3", statusReason="Essential container in task exited", container=child),
        {"jobs": ["parent:3"]},
    )
    with stub:
        details = batch_failure_details("parent", client=batch)
    stub.assert_no_pending_responses()
    assert details["jobId"] == "parent" and details["failedChildJobId"] == "parent:3"
    assert (details["exitCode"], details["statusReason"]) == (1, "Essential container in task exited")
    assert details["logStreamName"] == stream and details["logUrl"] == cloudwatch_url(stream)


def test_failed_batch_stage_to_teams_card(
    failing_aws: MotoServer,
    airflow_env: None,
    de_dag: Any,
    lam: ModuleType,
    webhook: Webhook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real stage operator fails on Batch; its failure callback publishes the job's details; the
    Lambda turns the published message into a card with links to Airflow and the job's log."""
    create_batch_queue()
    topic, queue = sns_tap()
    lam.reset_caches()
    teams_setup(webhook, monkeypatch)
    op = de_dag.get_task("extract")
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=3, max_tries=2)
    ctx = context(de_dag, ti)
    with pytest.raises(Exception, match="failed") as failure:
        op.execute(ctx)
    assert op.job_id and ti.xcoms[("extract", "batch_job_details")]["job_id"] == op.job_id

    SnsEventNotifier("task_failed", entity="de", topic_arn=topic)({**ctx, "exception": failure.value})

    message = published(queue)["body"]
    stream = f"etl-stage/default/{op.job_id}"
    assert message["kind"] == "task_failed" and (message["stage"], message["try_number"]) == ("extract", 3)
    assert message["error"]["type"] == "AirflowException"
    assert f"AWS Batch job ({op.job_id}) failed" in message["error"]["message"]
    assert message["batch"]["jobId"] == op.job_id
    assert message["batch"]["jobName"].startswith("etl-de-extract-")
    assert message["batch"]["status"] == "FAILED"
    assert message["batch"]["logStreamName"] == stream
    assert message["cloudwatch_log_url"] == message["batch"]["logUrl"] == cloudwatch_url(stream)

    result = lam.handler(sns_event(json.dumps(message)), LambdaContext())
    assert result == {"delivered": 1, "dead_lettered": 0}
    (request,) = webhook.requests
    content = card_content(request)
    assert facts(content)["Entity"] == "de" and facts(content)["Stage"] == "extract"
    assert facts(content)["Try"] == "3 of 3"
    assert facts(content)["Batch job"] == message["batch"]["jobName"]
    assert facts(content)["Error"].startswith(f"AirflowException: de: extract: AWS Batch job {op.job_id} failed")
    assert actions(content) == {
        "Open in Airflow": ti.log_url,
        "Airflow run": RUN_URL,
        "CloudWatch logs": cloudwatch_url(stream),
        "Batch job": f"https://console.aws.amazon.com/batch/home?region={REGION}#jobs/detail/{op.job_id}",
    }
