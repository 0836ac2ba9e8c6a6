"""The ``run_too_long`` Deadline Alert."""

from __future__ import annotations

import datetime as dt
from typing import Any

# Their defining modules (the Deadline Alerts guide imports from there; ``airflow.sdk``'s type stub
# does not list them yet).
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from entity_etl.orchestration.notify.notifier import SnsEventNotifier


def run_too_long_alert(
    entity: str | None, after: dt.timedelta, *, topic_arn: str | None = None, source: str | None = None
) -> DeadlineAlert:
    """A Deadline Alert: a ``run_too_long`` event when a run is still going ``after`` it was queued.

    Airflow (3.1+) evaluates it in the scheduler and runs the notifier in the triggerer
    (``AsyncCallback``), with a context holding the ``dag_run`` and the ``deadline``. The alert is
    dropped when the run finishes in time.
    """
    kwargs: dict[str, Any] = {"kind": "run_too_long", "max_duration_s": after.total_seconds()}
    if entity:
        kwargs["entity"] = entity
    if topic_arn:
        kwargs["topic_arn"] = topic_arn
    if source:
        kwargs["source"] = source
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=after,
        callback=AsyncCallback(SnsEventNotifier, kwargs=kwargs),
    )
