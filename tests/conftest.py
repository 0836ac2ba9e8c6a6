from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Airflow must never touch a developer's ~/airflow from the tests: one throwaway home per session.
_AIRFLOW_HOME = Path(os.environ.get("PYTEST_AIRFLOW_HOME", f"/tmp/entity-etl-test-airflow-{os.getpid()}"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
for _leak in [k for k in os.environ if k.startswith("ETL_")]:
    os.environ.pop(_leak, None)
# The embedded state store (run records, leases) of the whole session, never ~/.local/share.
os.environ["ETL_STATE_DB"] = str(_AIRFLOW_HOME / "etl-state.db")

from support.servers import MariaDB, MotoServer, start_mariadb, start_moto  # noqa: E402

# tests/deploy/ (Docker, MWAA's image) runs under `make test-deploy`, which sets DEPLOY_TESTS=1.
collect_ignore = [] if os.environ.get("DEPLOY_TESTS") == "1" else ["deploy"]


# Integration tests start servers or processes of their own: a test is one when it requests (directly or
# through another fixture) a fixture that starts a MariaDB, a moto server or Airflow's processes, when a
# parametrised backend it runs on carries the ``mariadb`` or ``moto`` marker (fixtures that start the
# server only for that parameter, with ``request.getfixturevalue``), or when it is in tests/deploy/
# (Docker). ``make test-unit`` runs the others: ``pytest -m "not integration"``.
SERVER_FIXTURES = frozenset(
    {
        "mariadb",  # this file; own_server: test_resume.py's MariaDB it restarts
        "own_server",
        "moto_server",  # this file; failing_moto: tests/notifications/, extra_moto: test_batch_backend.py
        "failing_moto",
        "extra_moto",
        "airflow",  # test_ui_browser.py: `make airflow`'s api-server, scheduler, dag-processor, triggerer
        "airflow_db",  # `airflow db migrate`, then `airflow dags test` (test_dag_integrity, test_broken_entity_dag)
        "nps_airflow_db",  # test_nps.py's DAG runs
        "api",  # test_interval_rules.py: a migrated metadata DB and the REST API app
        "demo_runs",  # test_demo.py: `make demo`'s driver, twice
    }
)
SERVER_MARKERS = frozenset({"mariadb", "moto"})


def starts_servers(item: pytest.Item) -> bool:
    if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(mark.name in SERVER_MARKERS for mark in callspec.marks):
        return True
    return item.path.is_relative_to(ROOT / "tests" / "deploy")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if starts_servers(item):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def own_state_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own run records, checkpoints and leases: tests reuse entity names and run ids."""
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "etl-state.db"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = start_mariadb(tmp_path_factory.mktemp("mariadb"))
    yield server
    server.stop()


@pytest.fixture
def mariadb_db(mariadb: MariaDB) -> Iterator[str]:
    """A fresh, empty database on the session's MariaDB server."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    conn = mariadb.connect()
    conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()
    yield name
    conn = mariadb.connect()
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """AWS SDK calls go to a freshly reset moto server (``AWS_ENDPOINT_URL``), with fake credentials."""
    moto_server.reset()
    moto_server.configure_batch_without_docker()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server
