"""``orchestration/notify/deadline.py``: ``run_too_long`` through DAG serialization and Airflow's own
``CallbackTrigger``, as in the triggerer."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from entity_etl.orchestration.notifier import (
    run_too_long_alert,
)
from support.notify_events import END, RUN_ID, RUN_URL, START, published, sns_tap
from support.servers import MotoServer

pytestmark = pytest.mark.moto


def test_run_too_long_alert_serializes_and_runs_in_the_triggerer(aws: MotoServer, airflow_env: None) -> None:
    """The DeadlineAlert survives DAG serialization; Airflow's CallbackTrigger then runs the notifier."""
    from airflow.models.callback import TriggererCallback
    from airflow.sdk import DAG
    from airflow.serialization.decoders import decode_deadline_alert
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.triggers.callback import CallbackTrigger

    topic, queue = sns_tap()
    alert = run_too_long_alert("de", dt.timedelta(hours=2), topic_arn=topic)
    dag = DAG("etl_de", schedule=None, start_date=START, deadline=alert, tags=["entity:de"])
    (encoded,) = DagSerialization.to_dict(dag)["dag"]["deadline"]
    decoded = decode_deadline_alert(encoded)
    assert decoded.interval == dt.timedelta(hours=2)
    assert type(decoded.reference).__name__ == "DagRunQueuedAtDeadline"
    callback = TriggererCallback(decoded.callback)  # what the scheduler queues when the deadline is missed
    assert callback.data["path"] == "entity_etl.orchestration.notifier.SnsEventNotifier"

    # The context Deadline.handle_miss builds: the run (the API's DAGRunResponse, JSON mode) and the deadline.
    simple_context = {
        "dag_run": {
            "dag_id": "etl_de",
            "dag_run_id": RUN_ID,
            "logical_date": "2026-11-02T00:00:00Z",
            "queued_at": "2026-11-03T00:00:05Z",
            "start_date": "2026-11-03T00:00:07Z",
            "end_date": None,
            "data_interval_start": "2026-11-02T00:00:00Z",
            "data_interval_end": "2026-11-03T00:00:00Z",
            "state": "running",
            "run_type": "scheduled",
        },
        "deadline": {"id": "0193a0f4-0000-7000-8000-000000000001", "deadline_time": END + dt.timedelta(hours=2)},
    }
    trigger = CallbackTrigger(
        callback_path=callback.data["path"], callback_kwargs={**callback.data["kwargs"], "context": simple_context}
    )

    async def run() -> list[Any]:
        return [event.payload async for event in trigger.run()]

    states = [str(payload["state"]) for payload in asyncio.run(run())]
    assert states == ["running", "success"]

    event = published(queue)["body"]
    assert event["kind"] == "run_too_long"
    assert (event["entity"], event["dag_id"], event["run_id"]) == ("de", "etl_de", RUN_ID)
    assert event["logical_date"] == "2026-11-02T00:00:00Z"
    assert event["data_interval"] == {"start": "2026-11-02T00:00:00Z", "end": "2026-11-03T00:00:00Z"}
    assert event["deadline"] == {
        "deadline_time": "2026-11-03T02:00:00+00:00",
        "queued_at": "2026-11-03T00:00:05Z",
        "start_date": "2026-11-03T00:00:07Z",
        "state": "running",
        "max_duration_s": 7200.0,
    }
    assert event["airflow_url"] == RUN_URL and event["task_id"] is None and event["error"] is None
