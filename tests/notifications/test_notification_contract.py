"""``notification_contract.py``: one contract both ends of the event import."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from entity_etl.orchestration.notifier import (
    build_event,
)
from support.notify_events import LAMBDA_DIR

pytestmark = pytest.mark.moto


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_both_ends_share_one_event_contract(partition: str, lam: ModuleType) -> None:
    """The Lambda's contract is the orchestration side's file, and its dependency-free CloudWatch link
    is the one the amazon provider builds; every event carries exactly the contract's fields."""
    from entity_etl import notification_contract as contract
    from entity_etl.orchestration.batch.diagnosis import cloudwatch_log_url as provider_url

    assert (LAMBDA_DIR / "notification_contract.py").resolve() == Path(contract.__file__).resolve()
    assert lam.KINDS == contract.KINDS
    group, stream = "/aws/batch/job", "etl-stage/default/0123abc"
    arn = f"arn:{partition}:batch:eu-west-1:123456789012:job/0123abc"
    assert contract.cloudwatch_log_url("eu-west-1", group, stream, arn) == provider_url(
        "eu-west-1", group, stream, partition
    )
    event = build_event("run_too_long", {"dag_run": {"dag_id": "d", "run_id": "r"}})
    assert tuple(event) == contract.EVENT_FIELDS and event["schema_version"] == contract.SCHEMA_VERSION
