"""The compose stack (``docker-compose.yaml``), up for real on a Docker engine with Compose v2.

The images are local STAND-INS (``deploy/local-images/build.py``: Airflow 3.3.1 from PyPI on a local
Python 3.12, PostgreSQL 15 for ``postgres:16``, MariaDB 10.11 for ``mysql:8.4``, moto from PyPI for
``motoserver/moto``), passed through the compose file's image variables, whose defaults stay the official
images. A unique project name and free loopback ports keep the stack apart from anything else here.

Every service reaches healthy (``airflow-init`` exits 0); the API server answers; the test logs in as the
README says (``admin``/``admin`` through ``/auth/token``), unpauses and triggers ``etl_de`` through
``/api/v2`` for the demo's data interval, waits for success, and checks the target table in the stack's
MySQL exactly (row count and a checksum) against the demo source rows, recomputed here, and the run
records in the DynamoDB run store on the stack's moto. ``docker compose down -v`` leaves no container,
volume or network of the project. Each phase's time is printed (the README's Tests section has them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import boto3
import MySQLdb
import pytest

from entity_etl.runtime.run_store import DynamoRunStore
from support.docker_images import ROOT, build_stand_ins, require_docker
from support.servers import IN_CI, free_port

pytestmark = [pytest.mark.slow]

#: The compose file's image variables -> the local STAND-INS the test runs (official images by default).
STAND_INS = {
    "AIRFLOW_IMAGE": "local/airflow:3.3.1-python3.12",
    "POSTGRES_IMAGE": "local/postgres:15-stand-in",
    "MYSQL_IMAGE": "local/mariadb:10.11-stand-in",
    "MOTO_IMAGE": "local/moto:5.1.18",
}
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]
LONG_RUNNING = ["postgres", "mysql", "aws", *AIRFLOW_SERVICES]
SURVEY_DAY = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)  # deploy/compose/load_demo_survey.py's day
DE_START, DE_END = dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
TIMINGS: dict[str, float] = {}


class Stack:
    def __init__(self) -> None:
        self.project = f"etlstack{uuid.uuid4().hex[:10]}"
        self.ports = {name: free_port() for name in ("AIRFLOW_PORT", "MYSQL_PORT", "AWS_PORT")}
        self.env = {
            **os.environ,
            **STAND_INS,
            **{k: str(v) for k, v in self.ports.items()},
            "ETL_AIRFLOW_TAG": "entity-etl-airflow:stand-in",
        }
        self.api = f"http://127.0.0.1:{self.ports['AIRFLOW_PORT']}"
        self.token = ""

    def compose(self, *args: str, timeout: float = 1800, check: bool = True) -> str:
        done = subprocess.run(
            ["docker", "compose", "-p", self.project, "-f", str(ROOT / "docker-compose.yaml"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
            )
        return done.stdout

    def states(self) -> dict[str, dict[str, Any]]:
        lines = self.compose("ps", "-a", "--format", "json").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        return {row["Service"]: row for row in rows}

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", check=False)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in ("container", "volume", "network"):
            args = [kind, "ls", "-q", "--filter", label] + (["-a"] if kind == "container" else [])
            out = subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.split()
            found += [f"{kind} {name}" for name in out]
        return found


def _require_compose() -> None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        message = "no Docker Compose v2 (deploy/local-images/install-compose.sh installs it)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true: the deploy suite never skips")
        pytest.skip(message)


def _wait(what: str, probe: Any, timeout: float, stack: Stack, every: float = 3) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{stack.logs()[-12000:]}")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_docker()
    _require_compose()
    started = time.monotonic()
    build_stand_ins(only=None)
    TIMINGS["stand-ins"] = time.monotonic() - started
    print("\ncompose stack with STAND-IN images: " + ", ".join(f"{k}={v}" for k, v in STAND_INS.items()))
    print("  (PostgreSQL 15 stands in for postgres:16, MariaDB 10.11 for mysql:8.4: Debian has neither)")
    stack = Stack()
    try:
        started = time.monotonic()
        stack.compose("build", "--quiet", "airflow-init")  # one image for all five
        TIMINGS["airflow image build"] = time.monotonic() - started
        started = time.monotonic()
        try:  # returns once postgres, mysql and aws are healthy and airflow-init is done
            stack.compose("up", "-d")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.logs()[-12000:]}") from None
        TIMINGS["up -d (init done)"] = time.monotonic() - started
        yield stack
    finally:
        started_down = time.monotonic()
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False)
        TIMINGS["down -v"] = time.monotonic() - started_down
        left = stack.leftovers()
        print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in TIMINGS.items()))
        assert not left, f"docker compose down -v left {left}"


def _all_healthy(stack: Stack) -> bool:
    states = stack.states()
    init = states.get("airflow-init", {})
    if init.get("State") == "exited" and init.get("ExitCode") != 0:
        raise AssertionError(f"airflow-init exited {init.get('ExitCode')}:\n{stack.logs()[-12000:]}")
    # "unhealthy" is not final: on a loaded machine a component can miss its first checks and recover
    # (nothing restarts it for that); the wait's timeout decides, with the logs.
    return init.get("State") == "exited" and all(states.get(n, {}).get("Health") == "healthy" for n in LONG_RUNNING)


def _expected_de(stack: Stack) -> list[tuple[str, str, str]]:
    """The newest source row per firmen_id in the run's interval: (company_id, trimmed name, updated_at)."""
    rows = _mysql(
        stack,
        "demo_sources",
        "SELECT firmen_id, firmenname, aktualisiert FROM unternehmen WHERE aktualisiert >= %s AND aktualisiert < %s",
        (DE_START.strftime("%Y-%m-%d %H:%M:%S"), DE_END.strftime("%Y-%m-%d %H:%M:%S")),
    )
    newest: dict[str, tuple[str, str]] = {}
    for key, name, updated in rows:
        if key not in newest or updated > newest[key][1]:
            newest[key] = (name.strip(), updated)
    return sorted((key, name, updated) for key, (name, updated) in newest.items())


def _mysql(stack: Stack, db: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = MySQLdb.connect(host="127.0.0.1", port=stack.ports["MYSQL_PORT"], user="etl", password="etl", database=db)
    try:
        cur = conn.cursor()
        cur.execute(sql, args)
        return list(cur.fetchall())
    finally:
        conn.close()


def _digest(rows: list[tuple[str, str, str]]) -> str:
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def _trigger_and_wait(stack: Stack, dag_id: str, run_id: str, start: dt.datetime, end: dt.datetime) -> float:
    _wait(f"{dag_id} parsed", lambda: stack.request("GET", f"/api/v2/dags/{dag_id}")[0] == 200, 300, stack)
    status, body = stack.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    assert status == 200 and body["is_paused"] is False, (status, body)
    status, body = stack.request(
        "POST",
        f"/api/v2/dags/{dag_id}/dagRuns",
        {
            "dag_run_id": run_id,
            "logical_date": start.isoformat(),
            "data_interval_start": start.isoformat(),
            "data_interval_end": end.isoformat(),
        },
    )
    assert status == 200, (status, body)
    started = time.monotonic()

    def finished() -> str | None:
        state = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")[1]["state"]
        return state if state in ("success", "failed") else None

    state = _wait(f"{dag_id} run {run_id} finished", finished, 900, stack, every=5)
    if state != "success":
        tis = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")[1]
        raise AssertionError(
            f"{dag_id} {run_id}: {state}\n{json.dumps(tis, indent=1)[-6000:]}\n{stack.logs()[-12000:]}"
        )
    return time.monotonic() - started


def test_the_stack_comes_up_runs_etl_de_and_goes_away(stack: Stack) -> None:
    started = time.monotonic()
    _wait("every service healthy, airflow-init done", lambda: _all_healthy(stack), 900, stack, every=5)
    TIMINGS["then all healthy"] = time.monotonic() - started
    states = stack.states()
    assert states["airflow-init"]["ExitCode"] == 0
    assert {n: states[n]["Health"] for n in LONG_RUNNING} == dict.fromkeys(LONG_RUNNING, "healthy")
    for name in LONG_RUNNING:  # the images the services run are the stand-ins passed in, labelled
        print(f"  {name}: {states[name]['Image']}")

    status, version = stack.request("GET", "/api/v2/version")
    assert status == 200 and version["version"] == "3.3.1", (status, version)
    assert stack.request("GET", "/api/v2/dags")[0] == 401  # not without a token
    status, body = stack.request("POST", "/auth/token", {"username": "admin", "password": "admin"})
    assert status == 201 and body["access_token"], (status, body)
    wrong = stack.request("POST", "/auth/token", {"username": "admin", "password": "nope"})[0]
    assert wrong == 401
    stack.token = body["access_token"]

    run_id = f"compose_{uuid.uuid4().hex[:8]}"
    TIMINGS["etl_de run"] = _trigger_and_wait(stack, "etl_de", run_id, DE_START, DE_END)

    expected = _expected_de(stack)
    got = _mysql(
        stack,
        "demo_target",
        "SELECT company_id, company_name, DATE_FORMAT(updated_at, '%%Y-%%m-%%d %%H:%%i:%%s') FROM company_de",
    )
    got_rows = sorted((str(a), str(b), str(c)) for a, b, c in got)
    assert len(expected) > 1000
    assert (len(got_rows), _digest(got_rows)) == (len(expected), _digest(expected))

    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=f"http://127.0.0.1:{stack.ports['AWS_PORT']}",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    records = DynamoRunStore("entity-etl-runs", client=dynamodb).run_records("de", run_id)
    by_stage = {r.stage: r.status for r in records}
    stages = ["cleanup", "extract", "load_staging", "translate", "dedupe", "load_target"]
    assert {s: by_stage.get(s) for s in stages} == dict.fromkeys(stages, "succeeded"), by_stage
    print(f"  etl_de {run_id}: {len(got_rows)} target rows, run records {by_stage}")

    _survey_nps_daily(stack, dynamodb)


def _percent(part: int, whole: int) -> Decimal:
    return (Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _survey_nps_daily(stack: Stack, dynamodb: Any) -> None:
    """The demo day's answers on the stack's moto -> the overall NPS row in its reporting database."""
    day = SURVEY_DAY.date().isoformat()
    ratings: list[int] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName="SurveyResponses"):
        ratings += [int(i["Rating"]["N"]) for i in page["Items"] if i["SurveyDate"]["S"] == day]
    assert len(ratings) > 100, len(ratings)  # load_demo_survey.py's day, put there by airflow-init
    promoters, detractors = ratings.count(5), sum(1 for r in ratings if r <= 3)
    satisfied = sum(1 for r in ratings if r >= 4)
    run_id = f"compose_nps_{uuid.uuid4().hex[:8]}"
    TIMINGS["survey_nps_daily run"] = _trigger_and_wait(
        stack, "survey_nps_daily", run_id, SURVEY_DAY, SURVEY_DAY + dt.timedelta(days=1)
    )
    rows = _mysql(
        stack,
        "survey_reporting",
        "SELECT responses, promoters, passives, detractors, satisfied, nps, csat_pct FROM survey_nps_daily"
        " WHERE report_date = %s AND dimension = 'overall'",
        (day,),
    )
    expected = (
        len(ratings),
        promoters,
        ratings.count(4),
        detractors,
        satisfied,
        _percent(promoters - detractors, len(ratings)),
        _percent(satisfied, len(ratings)),
    )
    assert rows == [expected], (rows, expected)
    print(f"  survey_nps_daily {day}: responses, promoters, passives, detractors, satisfied, NPS, CSAT = {expected}")
