"""docker-compose.yaml, checked without a Docker engine (there is none here).

* The file parses; the services, their health checks and their start order are those of the official
  Airflow 3 compose (api-server, scheduler, dag-processor, triggerer, an init step, Postgres), plus
  MySQL 8 and the AWS emulator; examples are off; dags/, plugins/ and include/ are mounted, and every
  mounted path exists; every connection an entity file names is defined.
* Every Airflow component gets the same non-empty JWT secret and API secret key (Airflow generates its
  own per container otherwise, and the tokens one signs the others reject), and the login the README
  names works: the committed passwords file airflow-init installs is read by the real SimpleAuthManager,
  ``admin``/``admin`` gets a token, and a component with the compose's JWT secret accepts that token
  where one without it does not.
* Its two init scripts run for real: ``bootstrap_aws.py`` against a moto server (twice: idempotent),
  after which the DynamoDB run store and lease work on the tables it made; ``load_demo_sources.py``
  against MariaDB, after which the ``de`` entity runs from those MySQL sources into a MySQL target.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import yaml

from entity_etl.config.loader import load_entities
from support.servers import MariaDB, MotoServer

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
    assert interpolate(SERVICES["airflow-apiserver"]["ports"][0], {}) == "127.0.0.1:8080:8080"
    init = SERVICES["airflow-init"]["command"][-1]
    assert "airflow db migrate" in init and "bootstrap_aws.py" in init and "load_demo_sources.py" in init
    assert interpolate(SERVICES["mysql"]["image"], {}).startswith("mysql:8")


OFFICIAL_IMAGES = {
    "POSTGRES_IMAGE": "postgres:16",
    "MYSQL_IMAGE": "mysql:8.4",
    "MOTO_IMAGE": "motoserver/moto:5.1.18",
}


def test_every_image_is_a_variable_whose_default_is_the_official_image() -> None:
    images = {name: s["image"] for name, s in SERVICES.items() if name in ("postgres", "mysql", "aws")}
    by_variable = {re.match(r"\$\{(\w+):-", v).group(1): v for v in images.values()}  # type: ignore[union-attr]
    assert {k: interpolate(v, {}) for k, v in by_variable.items()} == OFFICIAL_IMAGES
    for variable, value in by_variable.items():
        assert interpolate(value, {variable: "local/x:1"}) == "local/x:1"  # the tests' stand-ins go in here
    for name in ["airflow-init", *AIRFLOW]:
        arg = SERVICES[name]["build"]["args"]["AIRFLOW_IMAGE"]
        assert interpolate(arg, {}) == "apache/airflow:3.3.1-python3.12"
        assert interpolate(arg, {"AIRFLOW_IMAGE": "local/airflow:s"}) == "local/airflow:s"
    dockerfile = (ROOT / "deploy/compose/airflow.Dockerfile").read_text()
    assert "ARG AIRFLOW_IMAGE=apache/airflow:3.3.1-python3.12\nFROM ${AIRFLOW_IMAGE}\n" in dockerfile
    assert [line for line in dockerfile.splitlines() if line.startswith("FROM")] == ["FROM ${AIRFLOW_IMAGE}"]


def test_ports_are_published_on_loopback_only() -> None:
    published = [interpolate(p, {}) for s in SERVICES.values() for p in s.get("ports", [])]
    assert sorted(published) == ["127.0.0.1:3306:3306", "127.0.0.1:5000:5000", "127.0.0.1:8080:8080"]


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
    assert "ARG AIRFLOW_IMAGE=apache/airflow:3.3.1-python3.12" in dockerfile
    # Airflow's own constraints, committed: this network (and a build) cannot reach GitHub's raw URLs.
    assert "--constraint /opt/entity-etl/constraints.txt" in dockerfile
    constraints = ROOT / "deploy/compose/airflow-constraints-3.3.1-py3.12.txt"
    assert f"COPY --chown=airflow:0 {constraints.relative_to(ROOT)} /opt/entity-etl/constraints.txt" in dockerfile
    text = constraints.read_text()
    assert "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt" in text[:300]
    pins = dict(line.split("==", 1) for line in text.splitlines() if "==" in line and not line.startswith("#"))
    assert pins["apache-airflow-providers-amazon"] == "9.34.0" and pins["apache-airflow-providers-mysql"] == "6.6.1"


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
    mounts = dict(reversed(v.split(":")[:2]) for v in SERVICES["airflow-init"]["volumes"])
    tables_dir = SERVICES["airflow-init"]["environment"]["SURVEY_TABLES_DIR"]
    env = compose_env(AWS_ENDPOINT_URL=aws.endpoint, SURVEY_TABLES_DIR=str(ROOT / mounts[tables_dir]))
    bootstrap = script("bootstrap_aws")
    first = bootstrap.bootstrap(env)
    assert bootstrap.bootstrap(env) == first  # idempotent
    sqs = boto3.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=first["queue_url"], AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(":entity-loaded-dlq")
    assert first["topic_arn"] == env["ETL_NOTIFY_TOPIC_ARN"]
    assert {b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]} == {"entity-etl-demo"}
    # survey_nps_daily's table, as the survey Lambdas' definition has it, filled by load_demo_survey.py.
    tables = set(boto3.client("dynamodb").list_tables()["TableNames"])
    assert tables == {env["ETL_RUNS_TABLE"], env["ETL_LEASES_TABLE"], env["SURVEY_RESPONSES_TABLE"]}
    survey = script("load_demo_survey")
    assert survey.load(env["SURVEY_RESPONSES_TABLE"]) == survey.load(env["SURVEY_RESPONSES_TABLE"]) > 100
    from entity_etl.survey_reader import read_day

    day = read_day(env["SURVEY_RESPONSES_TABLE"], survey.DEMO_SURVEY_DAY)
    assert len(day) == survey.DEMO_ANSWERS  # a rerun overwrote, added nothing
    assert {r["rating"] for r in day} <= {1, 2, 3, 4, 5} and any(r["queue"] is None for r in day)

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


_COMPOSE_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}|\$(\w+)")


def interpolate(value: str, shell: Mapping[str, str]) -> str:
    """What ``docker compose`` makes of a value: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        if match.group(2) == ":-" and not shell.get(name):
            return match.group(3)
        if match.group(2) == "-" and name not in shell:
            return match.group(3)
        return shell.get(name, "")

    return _COMPOSE_VAR.sub(one, value)


def service_env(name: str, shell: Mapping[str, str] | None = None) -> dict[str, str]:
    return {k: interpolate(str(v), shell or {}) for k, v in SERVICES[name]["environment"].items()}


SHARED_SECRETS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY": "AIRFLOW_API_SECRET_KEY",
}


@pytest.mark.parametrize("shell", [{}, {"AIRFLOW_JWT_SECRET": "j" * 80, "AIRFLOW_API_SECRET_KEY": "k" * 80}])
def test_every_airflow_component_shares_the_jwt_secret_and_api_secret_key(shell: dict[str, str]) -> None:
    for key, variable in SHARED_SECRETS.items():
        values = {name: service_env(name, shell).get(key) for name in ["airflow-init", *AIRFLOW]}
        assert len(set(values.values())) == 1, (key, values)
        value = values["airflow-apiserver"]
        assert value, key
        if variable in shell:
            assert value == shell[variable]  # the environment overrides the default
        else:
            assert value.startswith("local-dev-only-"), value  # the default says what it is
        # JWTs are signed HS512: PyJWT flags an HMAC key shorter than the hash (64 bytes) as insecure.
        assert len(value.encode()) >= 64, (key, value)


def passwords_install() -> tuple[Path, str, str]:
    """airflow-init's copy of the passwords file: (repo file it copies, destination, owner)."""
    init = SERVICES["airflow-init"]["command"][-1].replace("\\\n", " ")
    (line,) = [line for line in init.splitlines() if line.strip().startswith("install ")]
    words = shlex.split(line)
    owner = words[words.index("-o") + 1]
    source, destination = words[-2:]
    mounts = dict(reversed(v.split(":")[:2]) for v in SERVICES["airflow-init"]["volumes"])
    folder = str(Path(source).parent)
    assert folder in mounts, f"airflow-init copies {source}, which no mount provides"
    return ROOT / mounts[folder] / Path(source).name, destination, owner


def readme_compose_login() -> tuple[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## docker-compose\n", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"user (\w+), password (\w+)", section)
    assert len(found) == 1, found
    return found[0]


def test_the_login_the_readme_names_is_the_one_airflow_init_installs() -> None:
    password_file = SERVICES["airflow-apiserver"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    source, destination, owner = passwords_install()
    assert destination == "$${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"  # bash reads the path set above
    assert interpolate(destination, {}) == "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE}"
    # Owned by the user the components run as: SimpleAuthManager opens the file read-write ("r+", "a+").
    assert f"{owner}:0" == SERVICES["airflow-apiserver"]["user"]
    folder = str(Path(password_file).parent)
    for name in ["airflow-init", *AIRFLOW]:
        assert service_env(name)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == password_file, name
        (volume,) = [v for v in SERVICES[name]["volumes"] if v.split(":")[1] == folder]
        named, _, *mode = volume.split(":")
        assert named in COMPOSE["volumes"], f"{name}: {volume} is not a named volume"
        assert "ro" not in mode, f"{name}: {volume} is read-only; SimpleAuthManager writes to the file"
    passwords = json.loads(source.read_text(encoding="utf-8"))
    users = dict(
        u.split(":")[:2]
        for u in service_env("airflow-apiserver")["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    )
    user, password = readme_compose_login()
    assert users == {user: "admin"}  # user name: role
    assert passwords == {user: password}
    assert f"user {user}, password {password}" in (ROOT / "docker-compose.yaml").read_text()


# Run in a fresh interpreter per component, so each reads its own environment as a container would.
_API_SERVER_LOGIN = """
import json, sys
from fastapi import HTTPException
from airflow.api_fastapi.app import init_auth_manager
from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody
from airflow.api_fastapi.auth.managers.simple.services.login import SimpleAuthManagerLogin
init_auth_manager()
user, password = sys.argv[1:3]
wrong = None
try:
    SimpleAuthManagerLogin.create_token(LoginBody(username=user, password=password + "x"))
except HTTPException as exc:
    wrong = exc.status_code
print(json.dumps({"token": SimpleAuthManagerLogin.create_token(LoginBody(username=user, password=password)),
                  "wrong_password": wrong}))
"""
_COMPONENT_VALIDATES = """
import json, sys
import jwt
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
try:
    claims = SimpleAuthManager._get_token_validator().validated_claims(sys.argv[1])
except jwt.InvalidTokenError as exc:
    claims = {"rejected": type(exc).__name__}
print(json.dumps(claims))
"""


def airflow_component(code: str, env: Mapping[str, str], home: Path, *args: str) -> Any:
    keep = {
        k: v
        for k, v in env.items()
        if k.startswith(("AIRFLOW__API", "AIRFLOW__CORE__SIMPLE_AUTH", "AIRFLOW__CORE__AUTH"))
    }
    home.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={"PATH": os.environ["PATH"], "HOME": str(home), "AIRFLOW_HOME": str(home), **keep},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_admin_logs_in_and_every_component_accepts_the_token(tmp_path: Path) -> None:
    """The real SimpleAuthManager on the installed passwords file, and the JWT checked by another component."""
    source, _, _ = passwords_install()
    installed = tmp_path / "auth" / "simple_auth_manager_passwords.json"
    installed.parent.mkdir()
    shutil.copyfile(source, installed)  # what airflow-init's install does
    user, password = readme_compose_login()
    api_env = service_env("airflow-apiserver") | {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(installed)}
    login = airflow_component(_API_SERVER_LOGIN, api_env, tmp_path / "apiserver", user, password)
    assert login["wrong_password"] == 401
    # Init found the user in the file, so it generated no password of its own.
    assert installed.read_text(encoding="utf-8") == source.read_text(encoding="utf-8")

    claims = airflow_component(
        _COMPONENT_VALIDATES, service_env("airflow-scheduler"), tmp_path / "sched", login["token"]
    )
    assert (claims.get("sub"), claims.get("role")) == (user, "admin"), claims  # the role in ..._USERS
    # Without the shared secret a container makes up its own, and rejects the API server's tokens.
    alone = {k: v for k, v in service_env("airflow-scheduler").items() if k != "AIRFLOW__API_AUTH__JWT_SECRET"}
    assert airflow_component(_COMPONENT_VALIDATES, alone, tmp_path / "alone", login["token"]) == {
        "rejected": "InvalidSignatureError"
    }


def test_compose_file_has_no_real_secrets() -> None:
    text = (ROOT / "docker-compose.yaml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    for password in re.findall(r"mysql://\w+:(\w+)@", text):
        assert password == "etl"  # the local demo database's, documented in the file
