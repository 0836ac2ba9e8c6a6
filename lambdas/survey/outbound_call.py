"""The outbound survey call: ``StartOutboundVoiceContact`` with bounded, jittered back-off.

Connect throttles this API (a few calls per second per account). A throttled or transiently failed
call is retried here, ``CONNECT_MAX_ATTEMPTS`` attempts in all, after a delay that doubles from
``CONNECT_RETRY_BASE_S`` up to ``CONNECT_RETRY_MAX_S`` with "equal jitter" (half fixed, half random),
and never past the invocation's remaining time: then the error goes up and the Kinesis record is
reported as failed, so Lambda retries it later. Any other error goes up at once.

Every attempt carries the same ``ClientToken`` (``survey-<contact chain id>``): Connect answers a
repeated request with the contact it already started, as long as that contact is still going.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from . import clients
from .ctr import SurveyCallback
from .logs import logger
from .phone import mask_phone
from .settings import CallbackSettings

RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "InternalServiceException", "ServiceUnavailableException"}
)
TRANSIENT_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
CALL_TIMEOUT_MARGIN_S = 11.0  # the Connect client's read timeout, plus a second


def client_token(chain_id: str) -> str:
    return f"survey-{chain_id}"[:500]


def build_request(callback: SurveyCallback, settings: CallbackSettings) -> dict[str, Any]:
    """The ``StartOutboundVoiceContact`` parameters.

    No ``RelatedContactId``: it would copy the original contact's attributes (``SurveyCandidate``
    among them) onto the survey call.
    """
    request: dict[str, Any] = {
        "InstanceId": settings.instance_id,
        "ContactFlowId": settings.contact_flow_id,
        "DestinationPhoneNumber": callback.phone_number,
        "ClientToken": client_token(callback.chain_id),
        "Attributes": dict(callback.attributes),
    }
    if settings.source_phone_number:
        request["SourcePhoneNumber"] = settings.source_phone_number
    if settings.queue_id:
        request["QueueId"] = settings.queue_id
    return request


def backoff_s(attempt: int, settings: CallbackSettings, rand: Callable[[], float] = random.random) -> float:
    """Delay after failed attempt ``attempt`` (1-based): half of the capped exponential, plus up to half again."""
    ceiling = min(settings.call_retry_max_s, settings.call_retry_base_s * 2 ** (attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def start_survey_call(
    callback: SurveyCallback,
    settings: CallbackSettings,
    *,
    time_left_s: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, int]:
    """Place the call; return (the survey contact id, attempts taken). Raises the last error."""
    request = build_request(callback, settings)
    attempt = 1
    while True:
        try:
            response = clients.connect().start_outbound_voice_contact(**request)
            return str(response["ContactId"]), attempt
        except (ClientError, *TRANSIENT_ERRORS) as exc:
            code = _error_code(exc)
            retryable = code in RETRYABLE_CODES or isinstance(exc, TRANSIENT_ERRORS)
            if not retryable or attempt >= settings.call_max_attempts:
                raise
            delay = backoff_s(attempt, settings)
            if time_left_s is not None and time_left_s() < delay + CALL_TIMEOUT_MARGIN_S:
                raise
            logger.warning(
                f"StartOutboundVoiceContact failed ({code}); retrying in {delay:.3f} s",
                extra={
                    "contact_id": callback.contact_id,
                    "phone": mask_phone(callback.phone_number),
                    "error_code": code,
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                },
            )
            sleep(delay)
            attempt += 1
