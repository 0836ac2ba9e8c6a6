"""The ``batch`` backend of ``EntityStageOperator`` against a real moto server (Batch without Docker).

What is checked is what AWS Batch receives and holds: the job name, queue, definition, command,
resources and environment of the submitted job, read back from the server; a retry that attaches to
a still-active job of the same run instead of submitting a second one; and a failed job that fails
the task.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from entity_etl.config.loader import find_entity
from entity_etl.config.model import ComputeConfig, EntityConfig, SourceConfig
from entity_etl.orchestration.batch.job_spec import batch_job_name
from entity_etl.orchestration.batch.provider_job import ACTIVE_STATES
from entity_etl.orchestration.factory import build_entity_dag
from entity_etl.orchestration.stage_operator import EntityStageOperator
from entity_etl.runtime.lease import open_lease_store
from entity_etl.runtime.run_store import StageRecord, open_run_store
from support.batch_moto import create_fargate_queue
from support.servers import MotoServer, start_moto

pytestmark = pytest.mark.moto

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
QUEUE = "etl-fargate"
JOB_DEFINITION = "etl-stage"
BUCKET = "etl-objects"
STORE_URL = f"s3://{BUCKET}/stage-runs"
RUN_ID = "scheduled__2026-11-02T00:00:00+00:00"
START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
END = dt.datetime(2026, 11, 3, tzinfo=dt.UTC)
#: AWS Batch's rule for job names (moto enforces the same one).
JOB_NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


# -- real AWS resources in moto -------------------------------------------------------------------
def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_batch_infra(endpoint: str) -> dict[str, str]:
    """The Fargate queue and job definition (``support.batch_moto``), and the object store's bucket."""
    infra = create_fargate_queue(
        queue=QUEUE,
        definition=JOB_DEFINITION,
        client=lambda service: client(service, endpoint),
        networkConfiguration={"assignPublicIp": "ENABLED"},
    )
    client("s3", endpoint).create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return infra


def jobs_named(endpoint: str, name: str) -> list[dict[str, Any]]:
    """Every job with this name in the queue, any status (a JOB_NAME filter ignores jobStatus)."""
    response = client("batch", endpoint).list_jobs(jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": [name]}])
    return list(response["jobSummaryList"])


def all_jobs(endpoint: str) -> list[dict[str, Any]]:
    """Every job of this package in the queue (all our job names start with ``etl-``)."""
    return jobs_named(endpoint, "etl-*")


def received_requests(server: MotoServer, path: str) -> list[dict[str, Any]]:
    """JSON bodies of the requests to ``path`` that the server received, from moto's request recorder."""
    with urllib.request.urlopen(f"{server.endpoint}/moto-api/recorder/download-recording", timeout=10) as response:
        lines = response.read().decode().splitlines()
    bodies = []
    for line in lines:
        entry = json.loads(line)
        if urlsplit(entry["url"]).path != path:
            continue
        body = base64.b64decode(entry["body"]) if entry["body_encoded"] else entry["body"]
        bodies.append(json.loads(body))
    return bodies


def moto_api(server: MotoServer, action: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/moto-api/{action}", method="POST"), timeout=10)


def fresh(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Empty ``server``, Batch without Docker, a new request recording, and the AWS SDK pointed at it."""
    server.reset()
    server.configure_batch_without_docker()
    moto_api(server, "recorder/reset-recording")
    moto_api(server, "recorder/start-recording")
    point_aws_at(monkeypatch, server.endpoint)
    return server


def start_recording_moto(base: Path, **extra_env: str) -> MotoServer:
    return start_moto(base, extra_env={"MOTO_RECORDER_FILEPATH": str(base / "requests.jsonl"), **extra_env})


def point_aws_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


# -- the task side --------------------------------------------------------------------------------
class RecordingTaskInstance:
    """What the operator needs from ``ti``: its try number, and ``xcom_push`` (recorded) for the links."""

    def __init__(self, try_number: int = 1) -> None:
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def task_context(run_id: str = RUN_ID, ti: RecordingTaskInstance | None = None) -> dict[str, Any]:
    return {
        "dag": SimpleNamespace(dag_id="etl_de"),
        "run_id": run_id,
        "data_interval_start": START,
        "data_interval_end": END,
        "logical_date": START,
        "ti": ti or RecordingTaskInstance(),
    }


def stats_key(entity: str, run_id: str, stage: str) -> str:
    """Where a stage job writes its statistics (the runtime's layout, restated independently)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)[:100]
    return f"stage-runs/runs/{entity}/{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}/stats/{stage}.json"


@pytest.fixture
def batch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch backend, extracts in S3, no other forwarded settings, and no 1-10 s sleeps between polls."""
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

    monkeypatch.setenv("ETL_COMPUTE_BACKEND", "batch")
    monkeypatch.setenv("ETL_OBJECT_STORE_URL", STORE_URL)
    for name in ("ETL_SECRETS_BACKEND", "ETL_SECRETS_PREFIX", "ETL_TRANSLATOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MIN", 0)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MAX", 0)
    monkeypatch.setattr(BatchClientHook, "exponential_delay", staticmethod(lambda tries: 0))


def de_operator(stage: str = "extract", compute: ComputeConfig | None = None) -> EntityStageOperator:
    config = find_entity("de")
    return EntityStageOperator(
        task_id=stage, entity=config.entity, stage=stage, compute=compute or config.compute, status_retries=3
    )


def expected_command(stage: str, run_id: str = RUN_ID) -> list[str]:
    return [
        "etlctl",
        "run-stage",
        "--entity",
        "de",
        "--stage",
        stage,
        "--run-id",
        run_id,
        "--interval-start",
        "2026-11-02T00:00:00+00:00",
        "--interval-end",
        "2026-11-03T00:00:00+00:00",
    ]


# -- job names ------------------------------------------------------------------------------------
ODD_RUN_IDS = [
    RUN_ID,
    "manual__2026-11-02T10:15:30.123456+00:00",
    "backfill__2026-11-02T00:00:00+00:00",
    "asset_triggered__2026-11-02T00:00:00.000001+00:00",
    "my run / with spaces, commas & ümlauts",
    "日本語のラン",
    "::::",
    "-leading-and-trailing-",
    "x" * 500,
    "manual__" + "ß" * 300 + ":tail",
]


@pytest.mark.parametrize("run_id", ODD_RUN_IDS)
def test_job_name_is_a_valid_batch_name_for_any_run_id(run_id: str) -> None:
    for entity in ("de", "a" + "b" * 40):  # the shortest-ish and the longest entity id the schema allows
        for stage in ("cleanup", "load_staging"):
            name = batch_job_name(entity, stage, run_id)
            assert len(name) <= 128
            assert JOB_NAME_RULE.fullmatch(name), name
            assert name.startswith(f"etl-{entity}-{stage}-")
            assert name == batch_job_name(entity, stage, run_id)  # deterministic


def test_job_names_tell_runs_stages_and_entities_apart() -> None:
    names = {
        batch_job_name(entity, stage, run_id)
        for entity in ("de", "jp")
        for stage in ("extract", "dedupe")
        for run_id in ODD_RUN_IDS
    }
    assert len(names) == 2 * 2 * len(ODD_RUN_IDS)
    # Long run ids that differ only after the part that fits still get different names.
    long_a, long_b = "manual__" + "x" * 300 + "a", "manual__" + "x" * 300 + "b"
    assert batch_job_name("de", "extract", long_a) != batch_job_name("de", "extract", long_b)
    # Run ids that clean up to the same readable text still get different names.
    assert batch_job_name("de", "extract", "run 1") != batch_job_name("de", "extract", "run/1")
    # The same run of the same stage: the same name, always (that is what a retry looks for).
    assert batch_job_name("de", "extract", RUN_ID) == batch_job_name("de", "extract", str(RUN_ID))


def test_aws_batch_accepts_the_odd_job_names(aws: MotoServer) -> None:
    create_batch_infra(aws.endpoint)
    batch = client("batch", aws.endpoint)
    for run_id in ODD_RUN_IDS:
        name = batch_job_name("de", "load_staging", run_id)
        job_id = batch.submit_job(jobName=name, jobQueue=QUEUE, jobDefinition=JOB_DEFINITION)["jobId"]
        assert [j["jobId"] for j in jobs_named(aws.endpoint, name)] == [job_id]


# -- submitting, attaching, retrying --------------------------------------------------------------
SLOW_JOB_S = 10
EXTRA_SERVERS = {
    # jobs succeed at once
    "recording": {},
    # jobs stay active (SUBMITTED) for SLOW_JOB_S, then fail: moto sleeps inside submit_job with the job
    # registered. Wide, for a loaded machine: the test's operator must still find the job active.
    "slow_failing": {"MOTO_SIMPLE_BATCH_FAIL_AFTER": str(SLOW_JOB_S)},
    # jobs fail at once
    "failing": {"MOTO_SIMPLE_BATCH_FAIL_AFTER": "0"},
}


@pytest.fixture(scope="module")
def extra_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, MotoServer]]:
    """Moto servers with their own process environment, each recording the requests it receives.

    They are started and warmed up (moto imports its EC2/IAM/Batch models on first use, seconds of
    CPU) in parallel, then emptied again.
    """

    def start(name: str) -> MotoServer:
        server = start_recording_moto(tmp_path_factory.mktemp(f"moto-{name}"), **EXTRA_SERVERS[name])
        create_batch_infra(server.endpoint)
        server.reset()
        return server

    with ThreadPoolExecutor(len(EXTRA_SERVERS)) as pool:
        futures = {name: pool.submit(start, name) for name in EXTRA_SERVERS}
        servers = {name: future.result() for name, future in futures.items()}
    yield servers
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(lambda server: server.stop(), servers.values()))


@pytest.fixture
def recording_moto(extra_moto: dict[str, MotoServer]) -> MotoServer:
    return extra_moto["recording"]


@pytest.fixture
def slow_failing_moto(extra_moto: dict[str, MotoServer]) -> MotoServer:
    return extra_moto["slow_failing"]


@pytest.fixture
def failing_moto(extra_moto: dict[str, MotoServer]) -> MotoServer:
    return extra_moto["failing"]


def test_batch_backend_submits_exactly_the_stage_job(
    recording_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(recording_moto, monkeypatch)
    infra = create_batch_infra(server.endpoint)
    stats = {"entity": "de", "stage": "extract", "rows_out": 1234, "bytes": 98765}
    s3 = client("s3", server.endpoint)
    s3.put_object(Bucket=BUCKET, Key=stats_key("de", RUN_ID, "extract"), Body=json.dumps(stats).encode())

    op = de_operator("extract")
    ti = RecordingTaskInstance()
    result = op.execute(task_context(ti=ti))

    name = batch_job_name("de", "extract", RUN_ID)
    assert op.job_name == name
    # Exactly one job, and exactly this request for it.
    assert received_requests(server, "/v1/submitjob") == [
        {
            "jobName": name,
            "jobQueue": QUEUE,
            "jobDefinition": JOB_DEFINITION,
            "parameters": {},
            "tags": {},
            "containerOverrides": {
                "command": expected_command("extract"),
                # de.yaml: memory_mib 4096 over the default vcpu 1
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "4096"}],
                "environment": [
                    # this run's try number and lease owner, so the job renews the run's lease
                    {"name": "ETL_ATTEMPT", "value": "1"},
                    {"name": "ETL_LEASE_OWNER", "value": f"etl_de/{RUN_ID}"},
                    {"name": "ETL_OBJECT_STORE_URL", "value": STORE_URL},
                ],
            },
        }
    ]
    # It first looked for an active job of the same name, in the same queue.
    assert received_requests(server, "/v1/listjobs")[0] == {
        "jobQueue": QUEUE,
        "filters": [{"name": "JOB_NAME", "values": [name]}],
    }
    assert len(all_jobs(server.endpoint)) == 1
    (summary,) = jobs_named(server.endpoint, name)
    assert summary["status"] == "SUCCEEDED"
    assert op.job_id == summary["jobId"]
    (job,) = client("batch", server.endpoint).describe_jobs(jobs=[op.job_id])["jobs"]
    assert job["jobName"] == name
    assert job["jobQueue"] == infra["queue_arn"] == f"arn:aws:batch:{REGION}:{ACCOUNT}:job-queue/{QUEUE}"
    assert job["jobDefinition"] == infra["definition_arn"]
    assert job["jobDefinition"] == f"arn:aws:batch:{REGION}:{ACCOUNT}:job-definition/{JOB_DEFINITION}:1"
    assert job["container"]["command"] == expected_command("extract")
    env = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert env["ETL_OBJECT_STORE_URL"] == STORE_URL
    # The stage statistics the job wrote are the task's return value (XCom), with the job id.
    assert result == {**stats, "job_id": op.job_id}
    # Console links were persisted for the job, its queue and its definition.
    assert ti.xcom["batch_job_details"]["job_id"] == op.job_id
    assert ti.xcom["batch_job_details"]["region_name"] == REGION
    assert ti.xcom["batch_job_queue"]["job_queue_arn"] == infra["queue_arn"]
    assert ti.xcom["batch_job_definition"]["job_definition_arn"] == infra["definition_arn"]


def test_compute_settings_and_forwarded_env_reach_the_job(
    recording_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(recording_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    monkeypatch.setenv("ETL_SECRETS_BACKEND", "aws")
    monkeypatch.setenv("ETL_TRANSLATOR", "amazon")
    monkeypatch.setenv("ETL_LOG_LEVEL", "DEBUG")  # the job logs at the worker's level (job_spec.FORWARDED_OPTIONS)
    compute = ComputeConfig(
        job_queue=QUEUE,
        job_definition=JOB_DEFINITION,
        vcpu=0.25,
        memory_mib=512,
        environment={"LOG_LEVEL": "debug"},  # an ETL_ name here is a config error (test_config_strict.py)
    )
    op = de_operator("dedupe", compute)
    result = op.execute(task_context())

    # No statistics were written: the task still returns who ran what.
    assert result == {"entity": "de", "stage": "dedupe", "run_id": RUN_ID, "job_id": op.job_id}
    (request,) = received_requests(server, "/v1/submitjob")
    assert request["containerOverrides"] == {
        "command": expected_command("dedupe"),
        "resourceRequirements": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
        "environment": [
            {"name": "ETL_ATTEMPT", "value": "1"},
            {"name": "ETL_LEASE_OWNER", "value": f"etl_de/{RUN_ID}"},
            {"name": "ETL_LOG_LEVEL", "value": "DEBUG"},
            {"name": "ETL_OBJECT_STORE_URL", "value": STORE_URL},
            {"name": "ETL_SECRETS_BACKEND", "value": "aws"},
            {"name": "ETL_TRANSLATOR", "value": "amazon"},
            {"name": "LOG_LEVEL", "value": "debug"},
        ],
    }


def test_retry_after_success_submits_a_new_job_and_other_runs_get_their_own(
    recording_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(recording_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    name = batch_job_name("de", "load_target", RUN_ID)

    first = de_operator("load_target")
    first.execute(task_context())
    assert [j["jobId"] for j in jobs_named(server.endpoint, name)] == [first.job_id]

    # A retry of the same task: the earlier job is no longer active, so a new one is submitted.
    retry = de_operator("load_target")
    retry.execute(task_context())
    assert retry.job_id != first.job_id
    jobs = jobs_named(server.endpoint, name)
    assert sorted(j["jobId"] for j in jobs) == sorted([first.job_id, retry.job_id])
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
    requests = received_requests(server, "/v1/submitjob")
    assert [r["jobName"] for r in requests] == [name, name]
    assert requests[0]["containerOverrides"] == requests[1]["containerOverrides"]
    assert requests[1]["containerOverrides"]["command"] == expected_command("load_target")

    # Another run of the same stage is a different job name, and a job of its own.
    other_run = "manual__2026-11-04T08:00:00+00:00"
    other = de_operator("load_target")
    other.execute(task_context(run_id=other_run))
    other_name = batch_job_name("de", "load_target", other_run)
    assert other_name != name
    assert [j["jobId"] for j in jobs_named(server.endpoint, other_name)] == [other.job_id]
    assert len(all_jobs(server.endpoint)) == 3
    (third,) = received_requests(server, "/v1/submitjob")[2:]
    assert third["jobName"] == other_name
    assert third["containerOverrides"]["command"] == expected_command("load_target", other_run)


def test_retry_attaches_to_the_still_active_job_instead_of_submitting_again(
    slow_failing_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(slow_failing_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    name = batch_job_name("de", "extract", RUN_ID)

    # The earlier try's job. moto's submit_job holds it active for SLOW_JOB_S before it answers (and
    # then fails the job), so it is submitted from a thread, as the earlier task try would have.
    submitted: dict[str, Any] = {}

    def earlier_try() -> None:
        batch = client("batch", server.endpoint)
        submitted.update(batch.submit_job(jobName=name, jobQueue=QUEUE, jobDefinition=JOB_DEFINITION))

    thread = threading.Thread(target=earlier_try, daemon=True)
    thread.start()
    deadline = time.monotonic() + SLOW_JOB_S - 1  # well before the job ends
    active: list[dict[str, Any]] = []
    while not active and time.monotonic() < deadline:
        active = [j for j in jobs_named(server.endpoint, name) if j["status"] in ACTIVE_STATES]
        time.sleep(0.05)
    assert len(active) == 1, "the earlier job never showed up as active"
    first_job_id = active[0]["jobId"]

    op = de_operator("extract")
    ti = RecordingTaskInstance()
    started = time.monotonic()
    with pytest.raises(Exception, match=re.escape(first_job_id)) as failure:
        op.execute(task_context(ti=ti))
    waited = time.monotonic() - started
    thread.join(timeout=30)

    assert submitted["jobId"] == first_job_id
    # The operator monitored the earlier job (until it failed) and submitted nothing itself.
    assert op.job_id == first_job_id
    assert [r["jobName"] for r in received_requests(server, "/v1/submitjob")] == [name]  # the thread's only
    assert [(j["jobId"], j["status"]) for j in jobs_named(server.endpoint, name)] == [(first_job_id, "FAILED")]
    assert len(all_jobs(server.endpoint)) == 1
    assert type(failure.value).__name__ == "AirflowException"
    assert f"AWS Batch job ({first_job_id}) failed" in str(failure.value)
    # It waited for the still-running job to end rather than failing (or succeeding) at once.
    assert waited > 1
    # The console link points at the job the task attached to.
    assert ti.xcom["batch_job_details"]["job_id"] == first_job_id


def test_deferrable_task_returns_the_stats_of_a_job_that_finished_before_deferring(
    recording_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BatchOperator does not defer when the job has already succeeded; the task must still return stats."""
    server = fresh(recording_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    stats = {"entity": "de", "stage": "cleanup", "rows_out": 0}
    s3 = client("s3", server.endpoint)
    s3.put_object(Bucket=BUCKET, Key=stats_key("de", RUN_ID, "cleanup"), Body=json.dumps(stats).encode())
    op = de_operator("cleanup")
    op.deferrable = True
    result = op.execute(task_context())
    assert result == {**stats, "job_id": op.job_id}
    assert [j["status"] for j in jobs_named(server.endpoint, batch_job_name("de", "cleanup", RUN_ID))] == ["SUCCEEDED"]

    # Resumed after a deferral (a new operator instance, as on the worker): the trigger's success
    # event is checked against Batch and the stats are returned.
    resumed = de_operator("cleanup")
    assert resumed.execute_complete(task_context(), {"status": "success", "job_id": op.job_id}) == result


def test_deferrable_retry_defers_on_the_still_active_job(
    slow_failing_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    server = fresh(slow_failing_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    name = batch_job_name("de", "extract", RUN_ID)
    thread = threading.Thread(
        target=lambda: client("batch", server.endpoint).submit_job(
            jobName=name, jobQueue=QUEUE, jobDefinition=JOB_DEFINITION
        ),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + SLOW_JOB_S - 1  # well before the job ends
    active: list[dict[str, Any]] = []
    while not active and time.monotonic() < deadline:
        active = [j for j in jobs_named(server.endpoint, name) if j["status"] in ACTIVE_STATES]
        time.sleep(0.05)
    assert len(active) == 1, "the earlier job never showed up as active"

    op = de_operator("extract")
    op.deferrable = True
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    thread.join(timeout=30)
    # What the triggerer receives: a trigger watching the earlier job.
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath.endswith("BatchJobTrigger")
    assert kwargs["job_id"] == active[0]["jobId"] == op.job_id
    assert deferred.value.method_name == "execute_complete"
    assert [r["jobName"] for r in received_requests(server, "/v1/submitjob")] == [name]  # the thread's only


def test_the_lease_is_renewed_while_the_task_waits_for_its_job(
    slow_failing_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(slow_failing_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    # Renewed every 0.75 s, lost after 1.5 s without a renewal: margins a loaded machine keeps.
    monkeypatch.setenv("ETL_LEASE_TTL_S", "3")
    leases = open_lease_store()
    leases.acquire("de", f"etl_de/{RUN_ID}", ttl_s=3)  # as the run's acquire_lease task did
    started = time.time()
    with pytest.raises(Exception, match="failed"):
        de_operator("extract").execute(task_context())  # moto holds the job active SLOW_JOB_S, then fails it
    assert time.time() - started > 6  # two lease lifetimes at least
    holder = leases.holder("de")
    assert holder is not None and holder.owner == f"etl_de/{RUN_ID}"
    assert holder.expires_at > started + 6  # renewed during the wait, not left to expire after 3 s


def test_the_job_gets_the_lease_epoch_of_its_run(
    recording_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(recording_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    lease = open_lease_store().acquire("de", f"etl_de/{RUN_ID}", ttl_s=600)  # as acquire_lease did
    de_operator("extract").execute(task_context())
    (request,) = received_requests(server, "/v1/submitjob")
    environment = {e["name"]: e["value"] for e in request["containerOverrides"]["environment"]}
    # The job's fencing token: its stage refuses to run if the lease has another epoch by then.
    assert environment["ETL_LEASE_EPOCH"] == str(lease.epoch)
    assert environment["ETL_LEASE_OWNER"] == f"etl_de/{RUN_ID}"


def test_failed_job_fails_the_task_and_names_the_job(
    failing_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(failing_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    # Statistics left by an earlier, successful try must not turn a failed job into a success.
    s3 = client("s3", server.endpoint)
    s3.put_object(Bucket=BUCKET, Key=stats_key("de", RUN_ID, "extract"), Body=b'{"rows_out": 1}')

    op = de_operator("extract")
    with pytest.raises(Exception, match="failed") as failure:
        op.execute(task_context())

    name = batch_job_name("de", "extract", RUN_ID)
    (job,) = jobs_named(server.endpoint, name)
    assert job["status"] == "FAILED"
    assert op.job_id == job["jobId"]
    assert type(failure.value).__name__ == "AirflowException"
    message = str(failure.value)
    assert f"AWS Batch job ({job['jobId']}) failed" in message
    assert name in message
    assert len(received_requests(server, "/v1/submitjob")) == 1
    # The container recorded nothing (it never ran): the task names entity, stage and job first, and
    # records the stage's failure with what AWS Batch says, so `etlctl runs` and the alerts show it.
    assert message.startswith(f"de: extract: AWS Batch job {job['jobId']} failed: ")
    record = open_run_store().get("de", RUN_ID, "extract")
    assert record is not None and (record.status, record.attempt, record.batch_job_id) == ("failed", 1, job["jobId"])
    assert record.error == message.split(" [", 1)[0]


def test_a_failed_job_reports_the_stages_own_error(
    failing_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fresh(failing_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    # What the container's etlctl writes when the stage itself fails (moto runs no container).
    error = "de: extract: de_source: source query failed: Table 'src.firmen' doesn't exist"
    store = open_run_store()
    store.put(StageRecord("de", RUN_ID, "extract", "running", attempt=2, started_at="2026-11-02T00:00:01+00:00"))
    store.put(
        StageRecord("de", RUN_ID, "extract", "failed", attempt=2, started_at="2026-11-02T00:00:01+00:00", error=error)
    )

    with pytest.raises(Exception, match="failed") as failure:
        de_operator("extract").execute(task_context(ti=RecordingTaskInstance(try_number=2)))
    assert str(failure.value).startswith(error + " [AWS Batch job (")
    # An error of an earlier try is not this try's cause.
    with pytest.raises(Exception, match="failed") as later:
        de_operator("extract").execute(task_context(ti=RecordingTaskInstance(try_number=3)))
    assert str(later.value).startswith("de: extract: AWS Batch job ")
    record = store.get("de", RUN_ID, "extract")
    assert record is not None and (record.status, record.attempt) == ("failed", 3)


def test_missing_job_queue_fails_the_submission(aws: MotoServer, batch_env: None) -> None:
    create_batch_infra(aws.endpoint)
    compute = ComputeConfig(job_queue="no-such-queue", job_definition=JOB_DEFINITION)
    op = de_operator("extract", compute)
    with pytest.raises(Exception, match="no-such-queue"):
        op.execute(task_context())
    assert all_jobs(aws.endpoint) == []


# -- extract partitions: one array job ---------------------------------------------------------------
def partitioned(config: EntityConfig, split_points: list[int | str]) -> EntityConfig:
    """``config`` with ``source.split_points``, validated as an entity file's would be."""
    source = SourceConfig.model_validate({**config.source.model_dump(), "split_points": split_points})
    return config.model_copy(update={"source": source})


def test_a_partitioned_extract_is_one_array_job_of_its_partitions(
    recording_moto: MotoServer, batch_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The factory's extract task of an entity with three split points submits one array job of four."""
    server = fresh(recording_moto, monkeypatch)
    create_batch_infra(server.endpoint)
    config = partitioned(find_entity("de"), ["HRB 3", "HRB 5", "HRB 7"])
    assert config.extract_partitions == 4
    dag = build_entity_dag(config)
    extract = dag.get_task("extract")
    assert extract.array_properties == {"size": 4}
    # Only the extract is partitioned: every other stage is a plain job.
    assert all(dag.get_task(stage).array_properties is None for stage in config.stages if stage != "extract")
    # The merging child writes the whole extract's statistics; the task returns them.
    stats = {"entity": "de", "stage": "extract", "rows_out": 40, "details": {"partitions": [3]}}
    client("s3", server.endpoint).put_object(
        Bucket=BUCKET, Key=stats_key("de", RUN_ID, "extract"), Body=json.dumps(stats).encode()
    )

    result = extract.execute(task_context())

    name = batch_job_name("de", "extract", RUN_ID)
    (request,) = received_requests(server, "/v1/submitjob")
    assert request == {
        "jobName": name,
        "jobQueue": QUEUE,
        "jobDefinition": JOB_DEFINITION,
        "arrayProperties": {"size": 4},
        "parameters": {},
        "tags": {},
        "containerOverrides": {
            "command": expected_command("extract"),
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "4096"}],
            "environment": [
                {"name": "ETL_ATTEMPT", "value": "1"},
                {"name": "ETL_LEASE_OWNER", "value": f"etl_de/{RUN_ID}"},
                {"name": "ETL_OBJECT_STORE_URL", "value": STORE_URL},
            ],
        },
    }
    (job,) = client("batch", server.endpoint).describe_jobs(jobs=[extract.job_id])["jobs"]
    assert job["status"] == "SUCCEEDED"
    assert job["arrayProperties"]["size"] == 4
    assert result == {**stats, "job_id": extract.job_id}


def test_an_unpartitioned_extract_is_a_plain_job() -> None:
    dag = build_entity_dag(find_entity("de"))
    assert find_entity("de").extract_partitions == 1
    assert dag.get_task("extract").array_properties is None


def test_partitions_beyond_a_batch_array_are_refused() -> None:
    config = find_entity("de")
    with pytest.raises(ValueError, match="de: extract: 10001 partitions; AWS Batch arrays hold 2 to 10,000"):
        EntityStageOperator(task_id="extract", entity="de", stage="extract", compute=config.compute, partitions=10_001)
