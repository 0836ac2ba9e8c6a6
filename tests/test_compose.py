"""docker-compose.yaml, checked without a Docker engine (there is none here).

* The file parses; the services, their health checks and their start order are those of the official
  Airflow 3 compose (api-server, scheduler, dag-processor, triggerer, an init step, Postgres), plus
  MySQL 8 and the AWS emulator; examples are off; dags/, plugins/ and include/ are mounted, and every
  mounted path exists; every connection an entity file names is defined.
* Its two init scripts run for real: ``bootstrap_aws.py`` against a moto server (twice: idempotent),
  after which the DynamoDB run store and lease work on the tables it made; ``load_demo_sources.py``
  against MariaDB, after which the ``de`` entity runs from those MySQL sources into a MySQL target.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml

from entity_etl.config.loader import load_entities
from servers import MariaDB, MotoServer

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "compose" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_services_health_checks_and_start_order() -> None:
    assert set(SERVICES) == {"postgres", "mysql", "aws", "airflow-init", *AIRFLOW}
    for name, service in SERVICES.items():
        if name != "airflow-init":
            assert service["healthcheck"]["test"], name
            assert service.get("restart") == "always", name
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            expected = "service_completed_successfully" if dependency == "airflow-init" else "service_healthy"
            assert condition == {"condition": expected}, (name, dependency)
    for name in AIRFLOW:
        assert "airflow-init" in SERVICES[name]["depends_on"]
        assert {"postgres", "mysql", "aws"} <= set(SERVICES[name]["depends_on"])
    assert [SERVICES[n]["command"] for n in AIRFLOW] == ["api-server", "scheduler", "dag-processor", "triggerer"]
    assert "8080:8080" in SERVICES["airflow-apiserver"]["ports"]
    init = SERVICES["airflow-init"]["command"][-1]
    assert "airflow db migrate" in init and "bootstrap_aws.py" in init and "load_demo_sources.py" in init
    assert SERVICES["mysql"]["image"].startswith("mysql:8")


def test_airflow_settings_mounts_and_image() -> None:
    for name in ["airflow-init", *AIRFLOW]:
        env = SERVICES[name]["environment"]
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[name]["volumes"]}
        for folder in ("dags", "plugins", "include"):
            assert mounts[f"/opt/airflow/{folder}"] == f"./{folder}"
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (ROOT / host).exists(), f"{name} mounts {host}, which does not exist"
    dockerfile = (ROOT / SERVICES["airflow-apiserver"]["build"]["dockerfile"]).read_text()
    assert "FROM apache/airflow:3.3.1-python3.12" in dockerfile
    assert "constraints-3.3.1/constraints-3.12.txt" in dockerfile


def test_every_connection_an_entity_names_is_defined() -> None:
    env = SERVICES["airflow-scheduler"]["environment"]
    defined = {k.removeprefix("AIRFLOW_CONN_").lower() for k in env if k.startswith("AIRFLOW_CONN_")}
    result = load_entities(ROOT / "include" / "entities", ROOT / "include" / "sql", env={})
    assert not result.problems
    used = {c.source.conn_id for c in result.enabled.values()} | {c.target.conn_id for c in result.enabled.values()}
    assert used <= defined, used - defined


def compose_env(**overrides: str) -> dict[str, str]:
    env = {k: str(v) for k, v in SERVICES["airflow-scheduler"]["environment"].items()}
    env.update(overrides)
    return env


def test_bootstrap_aws_makes_what_the_ports_use(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    env = compose_env(AWS_ENDPOINT_URL=aws.endpoint)
    bootstrap = script("bootstrap_aws")
    first = bootstrap.bootstrap(env)
    assert bootstrap.bootstrap(env) == first  # idempotent
    sqs = boto3.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=first["queue_url"], AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(":entity-loaded-dlq")
    assert first["topic_arn"] == env["ETL_NOTIFY_TOPIC_ARN"]
    assert {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]} == {"entity-etl-demo"}

    from entity_etl.runtime.lease import open_lease_store
    from entity_etl.runtime.run_store import StageRecord, open_run_store

    for name in ("ETL_STATE_STORE", "ETL_RUNS_TABLE", "ETL_LEASES_TABLE"):
        monkeypatch.setenv(name, env[name])
    open_run_store().put(StageRecord("de", "r1", "extract", "running"))
    assert open_run_store().get("de", "r1", "extract") is not None
    assert open_lease_store().acquire("de", "etl_de/r1", 60).owner == "etl_de/r1"


def test_demo_sources_load_into_mysql_and_de_runs_from_them(
    mariadb: MariaDB, mariadb_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    conn_json = mariadb.conn_json(mariadb_db)
    for conn_id in ("de_source", "jp_source", "br_source", "etl_target"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json)
    counts = script("load_demo_sources").load({e: f"{e}_source" for e in ("de", "jp", "br")}, rows=600)
    assert counts and all(n > 0 for n in counts.values())
    conn = mariadb.connect(mariadb_db, autocommit=True)  # no transaction left open to block the teardown
    request.addfinalizer(conn.close)
    cur = conn.cursor()
    for name, n in counts.items():
        cur.execute(f"SELECT COUNT(*) FROM `{name.split('.', 1)[1]}`")
        assert cur.fetchone()[0] == n

    from demo.sources import DEMO_INTERVALS

    from entity_etl.runtime.context import build_context
    from entity_etl.runtime.stages import run_stage

    monkeypatch.setenv("ETL_TRANSLATOR", "glossary")
    start, end = DEMO_INTERVALS["de"]
    ctx = build_context(
        entity="de", run_id="compose_check", interval_start=start, interval_end=end, object_store_url=str(tmp_path)
    )
    stats = {stage: run_stage(ctx, stage) for stage in ctx.config.stages}
    loaded = stats["load_target"].details["target_rows"]
    cur.execute("SELECT COUNT(*), COUNT(DISTINCT company_id) FROM company_de")
    assert cur.fetchone() == (loaded, loaded)
    assert loaded == stats["dedupe"].rows_out > 0
    assert stats["translate"].details["translated"] > 0


def test_compose_file_has_no_real_secrets() -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    for password in re.findall(r"mysql://\w+:(\w+)@", text):
        assert password == "etl"  # the local demo database's, documented in the file
