"""An entity added by uploading YAML + SQL runs on the Batch side with no image rebuild.

The job's own ``include/`` (the image's build-time copy) does not know the entity; ``ETL_INCLUDE_URL``
points at the synced copy in S3 (moto), and ``etlctl run-stage`` reads the entity's files from there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.batch.job_spec import container_overrides
from support.entity_files import EXTRACT, MINIMAL
from support.servers import MotoServer

BUCKET = "mwaa-dags"
URL = f"s3://{BUCKET}/dags/include"


def etlctl(stage: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "entity_etl.cli",
            "run-stage",
            "--entity",
            "nz",
            "--stage",
            stage,
            "--run-id",
            "manual__nz",
            "--interval-start",
            "2026-01-01T00:00:00Z",
            "--interval-end",
            "2026-01-02T00:00:00Z",
        ],
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def job_env(aws: MotoServer, tmp_path: Path) -> dict[str, str]:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=BUCKET, Key="dags/include/entities/nz.yaml", Body=MINIMAL.format(name="nz").encode())
    s3.put_object(Bucket=BUCKET, Key="dags/include/entities/_defaults.yaml", Body=b"owner: data-platform\n")
    s3.put_object(Bucket=BUCKET, Key="dags/include/sql/nz/extract.sql", Body=EXTRACT.encode())
    stale = tmp_path / "image-include"  # the image's copy, built before nz existed
    (stale / "entities").mkdir(parents=True)
    (stale / "sql").mkdir()
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, label TEXT, amount TEXT, changed_at TEXT)")
        conn.executemany(
            "INSERT INTO src VALUES (?, ?, ?, ?)",
            [(f"k{i % 30}", f"label {i}", f"{i}.25", f"2026-01-01 01:{i:02d}:00") for i in range(45)],
        )
    return {
        **os.environ,
        "ETL_INCLUDE_DIR": str(stale),
        "ETL_INCLUDE_URL": URL,
        "ETL_OBJECT_STORE_URL": str(tmp_path / "store"),
        "AIRFLOW_CONN_SRC_NZ": json.dumps({"conn_type": "sqlite", "host": str(src)}),
        "AIRFLOW_CONN_TGT": json.dumps({"conn_type": "sqlite", "host": str(tgt)}),
        "TGT_DB": str(tgt),
    }


def test_an_uploaded_entity_runs_from_the_synced_include(job_env: dict[str, str]) -> None:
    without = {k: v for k, v in job_env.items() if k != "ETL_INCLUDE_URL"}
    proc = etlctl("cleanup", without)
    assert proc.returncode == 2 and "nz" in proc.stderr  # the image alone does not know nz
    for stage in ("cleanup", "extract", "load_staging", "dedupe", "load_target"):
        proc = etlctl(stage, job_env)
        assert proc.returncode == 0, proc.stderr[-800:]
    with sqlite3.connect(job_env["TGT_DB"]) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM t_nz").fetchone() == (30, 30)


def test_an_entity_missing_from_the_url_is_one_clear_line(job_env: dict[str, str]) -> None:
    boto3.client("s3").delete_object(Bucket=BUCKET, Key="dags/include/entities/nz.yaml")
    proc = etlctl("extract", job_env)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line == f"etlctl: error: nz: no entity file {URL}/entities/nz.yaml (ETL_INCLUDE_URL={URL})"


def test_the_operator_forwards_the_include_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_INCLUDE_URL", URL)
    env = container_overrides(ComputeConfig(), ["etlctl"])["environment"]
    assert {"name": "ETL_INCLUDE_URL", "value": URL} in env
