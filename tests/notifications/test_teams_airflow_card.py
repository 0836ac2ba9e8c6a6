"""``lambdas/notifications/airflow_card.py``: the card of each event kind, posted to a local webhook."""

from __future__ import annotations

import datetime as dt
import json
from types import ModuleType
from typing import Any

import pytest

from entity_etl.orchestration.notifier import (
    build_event,
)
from support.notify_events import RUN_ID, RUN_URL, START, DagRun, TaskInstance, context
from support.teams_webhook import LambdaContext, Webhook, actions, card_content, facts, sns_event

pytestmark = pytest.mark.moto


def test_card_of_each_kind(teams: str, webhook: Webhook, lam: ModuleType, de_dag: Any, airflow_env: None) -> None:
    ti = TaskInstance("etl_de", RUN_ID, "extract", try_number=3, max_tries=2)
    run = DagRun(RUN_ID, START + dt.timedelta(days=1), START + dt.timedelta(days=1, minutes=12))
    ti.xcoms[("publish_loaded", "return_value")] = {"row_counts": {"loaded": 1150}}
    events = {
        "task_failed": build_event("task_failed", context(de_dag, ti, exception=OSError("source unreachable"))),
        "dag_run_failed": build_event("dag_run_failed", context(de_dag, ti, reason="task_failure")),
        "run_succeeded": build_event("run_succeeded", context(de_dag, ti, dag_run=run)),
        "run_too_long": build_event(
            "run_too_long",
            {
                "dag_run": {"dag_id": "etl_de", "dag_run_id": RUN_ID, "queued_at": "2026-11-03T00:00:05Z"},
                "deadline": {"deadline_time": "2026-11-03T02:00:05Z"},
            },
            entity="de",
        ),
    }
    for kind, event in events.items():
        assert lam.handler(sns_event(json.dumps(event), message_id=kind), LambdaContext()) == {
            "delivered": 1,
            "dead_lettered": 0,
        }
    cards = [card_content(request) for request in webhook.requests]
    titles = [card["body"][0]["text"] for card in cards]
    assert titles == [
        "❌ de: extract failed",
        "❌ de: run failed at extract",
        "✅ de: run succeeded",
        "⏰ de: run is taking too long",
    ]
    failed, run_failed, succeeded, too_long = (facts(card) for card in cards)
    assert failed["Entity"] == "de" and failed["Stage"] == "extract" and failed["Try"] == "3 of 3"
    assert failed["Error"] == "OSError: source unreachable"
    assert failed["Data interval"] == "2026-11-02T00:00:00+00:00 → 2026-11-03T00:00:00+00:00"
    assert actions(cards[0]) == {"Open in Airflow": ti.log_url, "Airflow run": RUN_URL}
    assert run_failed["Reason"] == "task_failure" and "Error" not in run_failed
    assert succeeded["Rows loaded"] == "1150" and succeeded["Duration"] == "720 s"
    assert actions(cards[2]) == {"Open in Airflow": RUN_URL}
    assert too_long["Deadline"] == "2026-11-03T02:00:05Z" and too_long["Queued at"] == "2026-11-03T00:00:05Z"
