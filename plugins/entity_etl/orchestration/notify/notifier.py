""":class:`SnsEventNotifier`: the Airflow notifier that builds an event and publishes it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

from entity_etl.notification_contract import KINDS, NotificationEvent
from entity_etl.orchestration.notify.event import build_event
from entity_etl.orchestration.notify.publish import TOPIC_ENV, publish_event
from entity_etl.orchestration.notify.redaction import redact


class SnsEventNotifier(BaseNotifier):
    """Publish one structured event (see :mod:`entity_etl.orchestration.notify`) to SNS; log it when
    no topic is configured.

    ``kind`` is one of :data:`KINDS`. ``entity`` names the entity (default: the DAG's
    ``entity:<id>`` tag). ``topic_arn`` defaults to ``$ETL_NOTIFY_TOPIC_ARN``, ``source`` to
    ``$ETL_NOTIFY_SOURCE`` or ``airflow``. ``max_duration_s`` is carried into ``run_too_long`` events.
    """

    def __init__(
        self,
        kind: str,
        *,
        entity: str | None = None,
        topic_arn: str | None = None,
        source: str | None = None,
        max_duration_s: float | None = None,
        context: Any = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
        super().__init__(context)
        self.kind = kind
        self.entity = entity
        self.topic_arn = topic_arn
        self.source = source
        self.max_duration_s = max_duration_s

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields), so no Jinja environment is asked for.

        Under ``airflow dags test`` a DAG-level callback gets a ``SerializedDAG``, which has no
        ``get_template_env``, and ``BaseNotifier`` fails before ``notify`` (apache/airflow#64649, open;
        the fix proposed upstream in #64993 is this early return).
        """
        if self.template_fields:
            super().render_template_fields(context, jinja_env)

    def notify(self, context: Any) -> None:
        """Build and publish the event. Never raises: a notification must not fail its callback."""
        self.send(context)

    async def async_notify(self, context: Any) -> None:
        """The triggerer's way in (Deadline Alerts): the same, on a thread, off the event loop."""
        await asyncio.to_thread(self.send, context)

    def send(self, context: Any, *, summary: Mapping[str, Any] | None = None) -> NotificationEvent | None:
        """Build and publish the event; return it (``None`` if it could not be built).

        ``summary``: see :func:`build_event`; a task can call this to post its own figures.
        """
        try:
            event = build_event(
                self.kind,
                context or {},
                entity=self.entity,
                source=self.source,
                log=self.log,
                extra={"max_duration_s": self.max_duration_s} if self.max_duration_s is not None else None,
                summary=summary,
            )
        except Exception as exc:
            self.log.error(
                "could not build the %s notification: %s: %s", self.kind, type(exc).__name__, redact(str(exc))
            )
            return None
        self._publish(event)
        return event

    def _publish(self, event: NotificationEvent) -> None:
        """Publish to the topic, else write the event to the task log. Never raises."""
        topic_arn = self.topic_arn or os.environ.get(TOPIC_ENV)
        body = json.dumps(event, sort_keys=True, default=str)
        if not topic_arn:
            self.log.warning("notification (no SNS topic: set %s to publish it): %s", TOPIC_ENV, body)
            return
        try:
            message_id = publish_event(event, topic_arn)
        except Exception as exc:
            self.log.error(
                "could not publish the %s notification to %s: %s: %s; the event was: %s",
                self.kind,
                topic_arn,
                type(exc).__name__,
                redact(str(exc)),
                body,
            )
            return
        self.log.info(
            "published the %s notification %s to %s (message %s)", self.kind, event["event_id"], topic_arn, message_id
        )


# The path Airflow serializes into DAGs and Deadline records, and the triggerer imports the class by:
# keep it the public one (``entity_etl.orchestration.notifier`` re-exports the class), so that a
# deadline stored before a refactoring of this package still finds its callback.
SnsEventNotifier.__module__ = "entity_etl.orchestration.notifier"
