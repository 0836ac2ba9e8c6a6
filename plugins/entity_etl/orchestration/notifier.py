"""The notifier's public names (its code is in :mod:`entity_etl.orchestration.notify`).

``entity_etl.orchestration.notifier.SnsEventNotifier`` is the path DAGs, the DAG factory and the
serialized Deadline Alerts name the notifier by (the triggerer imports it from here), so this module
stays, re-exporting the package's names.
"""

from __future__ import annotations

from entity_etl.notification_contract import DEFAULT_BATCH_LOG_GROUP, KINDS, SCHEMA_VERSION, NotificationEvent
from entity_etl.orchestration.batch.diagnosis import batch_failure_details, batch_job_url, cloudwatch_log_url
from entity_etl.orchestration.notify.batch_section import BATCH_JOB_XCOM, CLOUDWATCH_XCOM
from entity_etl.orchestration.notify.context import airflow_run_url
from entity_etl.orchestration.notify.deadline import run_too_long_alert
from entity_etl.orchestration.notify.event import DEFAULT_SOURCE, SOURCE_ENV, build_event
from entity_etl.orchestration.notify.notifier import SnsEventNotifier
from entity_etl.orchestration.notify.publish import TOPIC_ENV, publish_event
from entity_etl.orchestration.notify.redaction import MAX_ERROR_CHARS, redact, truncate

__all__ = [
    "BATCH_JOB_XCOM",
    "CLOUDWATCH_XCOM",
    "DEFAULT_BATCH_LOG_GROUP",
    "DEFAULT_SOURCE",
    "KINDS",
    "MAX_ERROR_CHARS",
    "SCHEMA_VERSION",
    "SOURCE_ENV",
    "TOPIC_ENV",
    "NotificationEvent",
    "SnsEventNotifier",
    "airflow_run_url",
    "batch_failure_details",
    "batch_job_url",
    "build_event",
    "cloudwatch_log_url",
    "publish_event",
    "redact",
    "run_too_long_alert",
    "truncate",
]
