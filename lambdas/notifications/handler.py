"""Teams notifications: SNS -> this Lambda -> a Microsoft Teams Workflows webhook.

Every SNS record carries one JSON message, either

* an event of the Airflow notifier (``schema_version`` 1; ``kind`` ``task_failed``,
  ``dag_run_failed``, ``run_succeeded`` or ``run_too_long``), or
* an EventBridge event from AWS Batch (``source`` ``aws.batch``): ``Batch Job State Change`` with
  status ``FAILED``, or ``Batch Job Queue Blocked``,

and becomes one Adaptive Card (version 1.4) in the message envelope that Teams Workflows webhooks
accept, POSTed with the standard library. HTTP 429 is retried after ``Retry-After`` (capped), 5xx and
network errors with bounded exponential backoff. A message that cannot be delivered — malformed, of
an unknown kind, no webhook secret, rejected, or still failing after the retries — is sent to the
dead-letter SQS queue with the original message and the reason, and logged as an error. So is an
invocation event that is not an SNS event, or a record of it that is not an SNS record
(``malformed_event``, the raw event or record kept). If even that send fails, the invocation fails,
so Lambda's own retries and on-failure destination take over: nothing is dropped silently.

Environment:

=========================  ===================================================  =========
``TEAMS_WEBHOOK_SECRET_ID``  Secrets Manager secret: the webhook URL, plain or   required
                             ``{"webhook_url": "..."}``; read once per container
``DEAD_LETTER_QUEUE_URL``    SQS queue for undeliverable messages                required
``TEAMS_MAX_ATTEMPTS``       POST attempts per message                           5
``TEAMS_RETRY_BASE_S``       first backoff delay, doubled per attempt            1
``TEAMS_RETRY_MAX_S``        longest backoff delay                               20
``TEAMS_RETRY_AFTER_MAX_S``  longest wait a ``Retry-After`` may ask for           30
``TEAMS_HTTP_TIMEOUT_S``     timeout of one POST                                 10
``LOG_LEVEL``                                                                    INFO
=========================  ===================================================  =========

Depends on the standard library and boto3 (in the Lambda runtime) only: no Airflow, no entity_etl.
Logs are JSON lines. The webhook URL (it carries a signature) and message bodies are never logged.

This module is the entry point (``handler.handler``); the work is in the modules next to it, all at
the zip root (``deploy/cloudformation/package_lambdas.py``):

============================  ==========================================================================
``records``                   the invocation event's SNS records; why an event is not an SNS event
``message_card``              one SNS message -> its card (:func:`build_card`), or :class:`Undeliverable`
``airflow_card``              the card of an Airflow notifier event
``batch_card``                the card of an AWS Batch EventBridge event
``card``                      Adaptive Card envelope, Markdown escaping, redaction, truncation to size
``webhook``                   the webhook URL (Secrets Manager) and the POST with retries
``dead_letter``               the dead-letter SQS queue
``clients``                   boto3 clients (one per container) and numeric settings
``json_log``                  JSON-line logs
``undeliverable``             :class:`Undeliverable`, the reason a message is not delivered
``notification_contract``     the event's contract, shared with the Airflow side (a copy of
                              ``plugins/entity_etl/notification_contract.py``)
``redaction``                 the runtime's redaction (a copy of ``plugins/entity_etl/runtime/redaction.py``)
============================  ==========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from card import MAX_CARD_BYTES, TRUNCATED, card_message, escape_markdown
from clients import forget_clients
from dead_letter import dead_letter
from json_log import log
from message_card import build_card
from notification_contract import KINDS, cloudwatch_log_url
from records import as_json, envelope_problem, sns_message
from undeliverable import Undeliverable
from webhook import forget_webhook_url, post_card, webhook_url

__all__ = [
    "KINDS",
    "MAX_CARD_BYTES",
    "TRUNCATED",
    "Undeliverable",
    "build_card",
    "card_message",
    "cloudwatch_log_url",
    "dead_letter",
    "escape_markdown",
    "handler",
    "post_card",
    "reset_caches",
    "webhook_url",
]


def reset_caches() -> None:
    """Forget the cached clients and webhook URL (a new container, as far as this module knows)."""
    forget_clients()
    forget_webhook_url()


def _dead_letter_envelope(event: Any, request_id: str | None) -> dict[str, int]:
    """A whole invocation event that is not an SNS event: log it and dead-letter it as it came."""
    reason = Undeliverable("malformed_event", envelope_problem(event))
    keys = sorted(str(k) for k in event)[:20] if isinstance(event, Mapping) else None
    log(
        logging.ERROR,
        "invocation event is NOT an SNS event (malformed_event): nothing delivered to Teams; "
        "sending the whole event to the dead-letter queue",
        reason=reason.detail,
        reason_code=reason.code,
        event_type=type(event).__name__,
        event_keys=keys,
        request_id=request_id,
    )
    try:
        dlq_id = dead_letter(as_json(event), reason, {})
    except Exception as exc:
        log(
            logging.ERROR,
            "invocation event LOST unless Lambda retries: the dead-letter queue refused it",
            error=f"{type(exc).__name__}: {exc}",
            request_id=request_id,
        )
        raise RuntimeError("could not dead-letter a malformed invocation event (not an SNS event)") from None
    log(logging.INFO, "dead-lettered", dlq_message_id=dlq_id, reason_code=reason.code, request_id=request_id)
    return {"delivered": 0, "dead_lettered": 1}


DELIVERED, DEAD_LETTERED, LOST = "delivered", "dead_lettered", "lost"


def _process(
    record: Any, index: int, request_id: str | None, time_left_s: Callable[[], float] | None
) -> tuple[str, str | None]:
    """(outcome, SNS message id) of one record: delivered, else dead-lettered, else lost."""
    raw: str | None = None
    message_id: str | None = None
    fields: dict[str, Any] = {}
    try:
        raw, message_id = sns_message(record, index)
        card, fields = build_card(raw)
        post_card(webhook_url(), card, message_id=message_id, time_left_s=time_left_s)
        return DELIVERED, message_id
    except Exception as exc:
        # Undeliverable says why; anything else is a bug here, named by its type only (its text
        # could quote the message).
        reason = exc if isinstance(exc, Undeliverable) else Undeliverable("internal_error", type(exc).__name__)
    if raw is None:  # the record itself could not be read: keep all of it
        raw = as_json(record)
    log(
        logging.ERROR,
        f"notification NOT delivered to Teams ({reason.code}); sending it to the dead-letter queue",
        reason=reason.detail,
        reason_code=reason.code,
        message_id=message_id,
        record_index=index,
        request_id=request_id,
        **fields,
    )
    try:
        dlq_id = dead_letter(raw, reason, record if isinstance(record, Mapping) else {})
    except Exception as exc:
        log(
            logging.ERROR,
            "notification LOST unless Lambda retries: the dead-letter queue refused it",
            error=f"{type(exc).__name__}: {exc}",
            message_id=message_id,
            record_index=index,
            request_id=request_id,
        )
        return LOST, message_id
    log(logging.INFO, "dead-lettered", message_id=message_id, dlq_message_id=dlq_id, reason_code=reason.code)
    return DEAD_LETTERED, message_id


def handler(event: Any, context: Any = None) -> dict[str, int]:
    """SNS-triggered entry point: deliver each record's message, or dead-letter it.

    An event that is not an SNS event (no ``Records`` list: an EventBridge event delivered straight
    to the function, a test invocation with ``{}``) is dead-lettered whole as ``malformed_event``. Each
    record is read inside its own protection, so one record that is not an SNS record is dead-lettered
    (``malformed_event``) without failing the invocation, and the other records are not sent twice.
    """
    request_id = getattr(context, "aws_request_id", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    time_left_s = (lambda: remaining() / 1000.0) if callable(remaining) else None
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        return _dead_letter_envelope(event, request_id)
    outcomes = [_process(record, index, request_id, time_left_s) for index, record in enumerate(records)]
    failures = [
        message_id or f"(record {index})" for index, (outcome, message_id) in enumerate(outcomes) if outcome == LOST
    ]
    if failures:
        # Fail the invocation: Lambda retries it, then hands it to the function's on-failure destination.
        raise RuntimeError(f"could not deliver or dead-letter SNS message(s) {', '.join(failures)}")
    return {
        "delivered": sum(outcome == DELIVERED for outcome, _ in outcomes),
        "dead_lettered": sum(outcome == DEAD_LETTERED for outcome, _ in outcomes),
    }
