"""The ``lease_store`` fixture: the lease contract on SQLite and on DynamoDB (moto), for the suites that
run it on both (import it by name, as ``support.kv_entity``'s ``backend`` is)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from entity_etl.runtime.lease import DynamoLeaseStore, LeaseStore, SqliteLeaseStore


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def lease_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeaseStore]:
    if request.param == "sqlite":
        yield SqliteLeaseStore(tmp_path / "state.db")
        return
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    yield DynamoLeaseStore("leases", client)
