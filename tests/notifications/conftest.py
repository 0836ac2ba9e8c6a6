"""Fixtures of the notification suites: the real ``etl_de`` DAG, the Airflow API URL, a moto server
whose Batch jobs fail, the Teams Lambda loaded by path and its local webhook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from entity_etl.config.loader import find_entity
from entity_etl.orchestration.factory import build_entity_dag
from support.notify_events import BASE_URL, REGION
from support.servers import MotoServer, start_moto
from support.teams_lambda import load_teams_handler
from support.teams_webhook import Webhook, teams_setup


@pytest.fixture(scope="module")
def de_dag() -> Any:
    return build_entity_dag(find_entity("de"))


@pytest.fixture
def airflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL + "/")
    monkeypatch.delenv("ETL_NOTIFY_SOURCE", raising=False)
    monkeypatch.delenv("ETL_NOTIFY_TOPIC_ARN", raising=False)


@pytest.fixture(scope="module")
def failing_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server whose Batch jobs fail at once (MOTO_SIMPLE_BATCH_FAIL_AFTER=0)."""
    server = start_moto(tmp_path_factory.mktemp("moto-failing"), extra_env={"MOTO_SIMPLE_BATCH_FAIL_AFTER": "0"})
    yield server
    server.stop()


@pytest.fixture
def failing_aws(failing_moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Like the ``aws`` fixture, on the failing server; the provider's Batch polls without sleeping."""
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

    failing_moto.reset()
    failing_moto.configure_batch_without_docker()
    for name, value in {
        "AWS_ENDPOINT_URL": failing_moto.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
        "ETL_COMPUTE_BACKEND": "batch",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MIN", 0)
    monkeypatch.setattr(BatchClientHook, "DEFAULT_DELAY_MAX", 0)
    monkeypatch.setattr(BatchClientHook, "exponential_delay", staticmethod(lambda tries: 0))
    return failing_moto


@pytest.fixture(scope="module")
def lam() -> ModuleType:
    """The handler module, loaded from its file the way the Lambda runtime loads it."""
    return load_teams_handler()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.stop()


@pytest.fixture
def teams(aws: MotoServer, webhook: Webhook, lam: ModuleType, monkeypatch: pytest.MonkeyPatch) -> str:
    lam.reset_caches()  # a fresh container
    return teams_setup(webhook, monkeypatch)
