"""The AWS Batch job image (``Dockerfile``), built and run on a real Docker engine.

Built with the local STAND-IN base images (``deploy/local-images/build.py``; the Dockerfile's defaults
stay the official ones). The image holds no Airflow; its size is printed. Then every stage of an entity
runs in a container, each with exactly the command and environment the ``batch`` backend sends
(``job_spec.stage_command`` and ``container_overrides``), as the image's non-root user, against the
session's MariaDB and a moto S3 and DynamoDB on the host; the target is checked exactly. An extract
container killed with ``docker kill`` at its third chunk checkpoint resumes on the next ``docker run``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.batch.job_spec import container_overrides, stage_command
from entity_etl.runtime.lease import DynamoLeaseStore
from entity_etl.runtime.run_store import DynamoRunStore
from support.docker_images import build_image, build_stand_ins, require_docker
from support.entity_files import make_include, write_entity
from support.servers import MariaDB, MotoServer

pytestmark = [pytest.mark.mariadb, pytest.mark.moto, pytest.mark.slow]

TAG = "entity-etl-stage:deploy-test"
ENTITY = """\
entity: dx
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: dx_src, extract_sql: dx/extract.sql, chunk_rows: 1000}
staging: {table: stg_dx}
target: {conn_id: dx_tgt, table: t_dx, chunk_rows: 5000}
columns:
  - {name: id, type: string(20)}
  - {name: val, type: string(80)}
  - {name: v, type: integer}
dedupe: {key: [id], keep: newest, order_by: v}
"""
SQL = "SELECT id, val, v FROM src"
ROWS = 12_000  # 12 extract chunks, 10,000 keys: 2,000 older duplicates
ODD = ["plain", "", " trailing ", 'quote " inside', "comma, and\nnewline", "ünï 🎧", "NULL", "\\N", "back\\slash"]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"
OWNER = f"etl_dx/{RUN_ID}"
RUNS, LEASES, BUCKET = "etl-runs", "etl-leases", "extracts"


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    build_stand_ins()
    started = time.monotonic()
    size = build_image(TAG)
    print(f"job image {TAG}: {size:.0f} MB, built in {time.monotonic() - started:.0f} s")
    return TAG


def _source_rows() -> list[tuple[str, str, int]]:
    return [(f"k{i % 10_000:05d}", f"{ODD[i % len(ODD)]} #{i}", i) for i in range(ROWS)]


@pytest.fixture
def world(
    mariadb: MariaDB, mariadb_db: str, aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    # The worker's deployment settings, which the batch backend forwards to the job (job_spec.FORWARDED_ENV).
    for name, value in {
        "ETL_OBJECT_STORE_URL": f"s3://{BUCKET}/dx",
        "ETL_STATE_STORE": "dynamodb",
        "ETL_RUNS_TABLE": RUNS,
        "ETL_LEASES_TABLE": LEASES,
    }.items():
        monkeypatch.setenv(name, value)
    password = uuid.uuid4().hex
    conn = mariadb.connect(mariadb_db)
    cur = conn.cursor()
    cur.execute(f"CREATE USER IF NOT EXISTS 'etl_docker'@'127.0.0.1' IDENTIFIED BY '{password}'")
    cur.execute(f"ALTER USER 'etl_docker'@'127.0.0.1' IDENTIFIED BY '{password}'")
    cur.execute(f"GRANT ALL ON `{mariadb_db}`.* TO 'etl_docker'@'127.0.0.1'")
    cur.execute("CREATE TABLE src (id VARCHAR(20), val VARCHAR(80), v INTEGER) COLLATE utf8mb4_nopad_bin")
    cur.executemany("INSERT INTO src VALUES (%s, %s, %s)", _source_rows())
    conn.commit()
    conn.close()
    include = make_include(tmp_path)
    write_entity(include, "dx", ENTITY, SQL)
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(**DynamoRunStore.table_definition(RUNS))
    dynamodb.create_table(**DynamoLeaseStore.table_definition(LEASES))
    lease = DynamoLeaseStore(LEASES, dynamodb).acquire("dx", OWNER, ttl_s=3600)
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir(mode=0o777)
    failpoints.chmod(0o777)  # the container's user (uid 10001) writes its pause marker here
    conn_json = json.dumps(
        {
            "conn_type": "mysql",
            "host": "127.0.0.1",
            "port": mariadb.port,
            "login": "etl_docker",
            "password": password,
            "schema": mariadb_db,
        }
    )
    yield {
        "include": include,
        "failpoints": failpoints,
        "conn": conn_json,
        "epoch": lease.epoch,
        "endpoint": aws.endpoint,
        "db": mariadb_db,
    }


def _docker_run(
    world: dict[str, Any],
    stage: str,
    *,
    name: str,
    extra_env: dict[str, str] | None = None,
    detach: bool = False,
    attempt: int = 1,
) -> subprocess.CompletedProcess[str]:
    """One stage in a container, with the command and environment the batch backend submits."""
    command = stage_command("dx", stage, RUN_ID, START, START + dt.timedelta(days=1))
    run_env = {"ETL_LEASE_OWNER": OWNER, "ETL_LEASE_EPOCH": str(world["epoch"]), "ETL_ATTEMPT": str(attempt)}
    overrides = container_overrides(ComputeConfig(), command, run_env)
    env = {e["name"]: e["value"] for e in overrides["environment"]}
    # What the job definition and the Batch job role give the container on AWS: the connections, the
    # region and credentials (moto's), the endpoint; the include folder mounted as the image reads it.
    env |= {
        "AIRFLOW_CONN_DX_SRC": world["conn"],
        "AIRFLOW_CONN_DX_TGT": world["conn"],
        "AWS_ENDPOINT_URL": world["endpoint"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "ETL_FAILPOINT_DIR": "/failpoints",
        **(extra_env or {}),
    }
    args = ["docker", "run", "--name", name, "--network", "host"]
    args += ["-v", f"{world['include']}:/opt/entity-etl/include:ro", "-v", f"{world['failpoints']}:/failpoints"]
    for key, value in sorted(env.items()):
        args += ["-e", f"{key}={value}"]
    args += ["-d"] if detach else ["--rm"]
    return subprocess.run([*args, TAG, *overrides["command"]], capture_output=True, text=True, timeout=600)


def _target_rows(mariadb: MariaDB, db: str) -> list[tuple[str, str, int]]:
    conn = mariadb.connect(db)
    cur = conn.cursor()
    cur.execute("SELECT id, val, v FROM t_dx ORDER BY id")
    rows = [tuple(r) for r in cur.fetchall()]
    conn.close()
    return rows  # type: ignore[return-value]


def _digest(rows: list[tuple[str, str, int]]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_the_image_holds_the_runtime_and_no_airflow(image: str) -> None:
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            image,
            "sh",
            "-c",
            "id -u; etlctl --help >/dev/null && echo etlctl-ok; python -c 'import airflow' 2>&1 | tail -1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stdout.split("\n")
    assert lines[0] == "10001"  # the non-root user
    assert lines[1] == "etlctl-ok"
    assert "No module named 'airflow'" in lines[2]


def test_every_stage_runs_in_a_container_and_a_killed_extract_resumes(
    image: str, world: dict[str, Any], mariadb: MariaDB
) -> None:
    run = uuid.uuid4().hex[:8]
    assert _docker_run(world, "cleanup", name=f"dx-cleanup-{run}").returncode == 0
    # The extract pauses at its 3rd checkpoint; the container is killed there, as Batch or Fargate would.
    name = f"dx-extract-{run}"
    started = _docker_run(
        world, "extract", name=name, detach=True, extra_env={"ETL_FAILPOINTS": "extract.checkpointed=pause@3"}
    )
    assert started.returncode == 0, started.stderr
    marker = world["failpoints"] / "extract.checkpointed.paused"
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
            ).stdout.strip()
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
            assert state == "true", f"the extract container stopped before its pause:\n{logs.stderr[-3000:]}"
            assert time.monotonic() < deadline, "no pause marker within 300 s"
            time.sleep(0.5)
        subprocess.run(["docker", "kill", name], check=True, capture_output=True)
        exit_code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True, text=True
        ).stdout.strip()
        assert exit_code == "137"  # SIGKILL
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    store = DynamoRunStore(RUNS, boto3.client("dynamodb"))
    killed = store.get("dx", RUN_ID, "extract")
    assert killed is not None and killed.status == "running"  # what a killed job leaves
    # The task's retry (try 2, as Airflow numbers it) runs the extract's job again.
    rerun = _docker_run(world, "extract", name=f"dx-extract2-{run}", attempt=2)
    assert rerun.returncode == 0, rerun.stderr
    record = store.get("dx", RUN_ID, "extract")
    assert record is not None and record.status == "succeeded"
    assert record.stats["details"]["resumed_chunks"] == 3
    assert record.stats["rows_out"] == ROWS
    for stage in ("load_staging", "dedupe", "load_target"):
        done = _docker_run(world, stage, name=f"dx-{stage}-{run}")
        assert done.returncode == 0, f"{stage}: {done.stderr[-3000:]}"
    # The target, exactly: the newest version of each key, every odd value as in the source.
    newest: dict[str, tuple[str, str, int]] = {}
    for row in _source_rows():
        if row[0] not in newest or row[2] > newest[row[0]][2]:
            newest[row[0]] = row
    expected = sorted(newest.values())
    got = _target_rows(mariadb, world["db"])
    wanted = set(expected)
    assert [r for r in got if r not in wanted][:5] == []
    assert (len(got), _digest(got)) == (len(expected), _digest(expected))
    parts = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="dx/")["KeyCount"]
    assert parts >= 12
