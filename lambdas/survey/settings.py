"""Configuration from environment variables: read per invocation, checked, and explained when wrong.

Nothing is hard-coded: instance, flow, number/queue and table names all come from the function's
environment. A missing or malformed variable raises :class:`ConfigurationError` naming the variable
and what it should hold; the handlers let it fail the invocation, so a misconfigured deployment is
an error in the function's metrics and logs, never a silent no-op.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .phone import is_e164

TRUE_WORDS = ("1", "true", "yes", "on")
# The contact attribute the original AWS post-call survey walkthrough's flow stores the keyed-in digit in.
DEFAULT_RATING_KEY = "SurveyResponse"
FALSE_WORDS = ("0", "false", "no", "off")


class ConfigurationError(RuntimeError):
    """A required environment variable is missing or malformed."""


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set: it must hold {what}")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigurationError(f"environment variable {name}={raw!r} must be at least {minimum:g}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ConfigurationError(f"environment variable {name}={raw!r} must be true or false")


def _queue_url(env: Mapping[str, str], name: str) -> str:
    url = _required(env, name, "the URL of the SQS queue for CTR records that can never be processed")
    if not url.startswith(("https://", "http://")) or url.count("/") < 4:
        raise ConfigurationError(
            f"environment variable {name}={url!r} is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)"
        )
    return url


@dataclass(frozen=True)
class CallbackSettings:
    """``process_ctr_stream``: where and how to place the outbound survey call."""

    instance_id: str
    contact_flow_id: str
    source_phone_number: str | None
    queue_id: str | None
    marker_table: str
    dead_letter_queue_url: str
    marker_ttl_s: int
    max_callback_delay_s: int
    require_agent: bool
    call_max_attempts: int
    call_retry_base_s: float
    call_retry_max_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CallbackSettings:
        env = os.environ if env is None else env
        source = _optional(env, "SURVEY_SOURCE_PHONE_NUMBER")
        queue = _optional(env, "SURVEY_QUEUE_ID")
        if not source and not queue:
            raise ConfigurationError(
                "neither SURVEY_SOURCE_PHONE_NUMBER nor SURVEY_QUEUE_ID is set: StartOutboundVoiceContact needs "
                "a claimed E.164 source number or an outbound queue id (or both)"
            )
        if source and not is_e164(source):
            raise ConfigurationError("environment variable SURVEY_SOURCE_PHONE_NUMBER is not an E.164 number (+...)")
        marker_ttl_s = int(_number(env, "CALLBACK_MARKER_TTL_S", 7 * 24 * 3600, 3600))
        max_delay_s = int(_number(env, "SURVEY_MAX_CALLBACK_DELAY_S", 3600, 0))
        if max_delay_s == 0 or max_delay_s >= marker_ttl_s:
            # A marker must outlive every CTR that may still be acted on, or a late redelivery calls twice.
            raise ConfigurationError(
                "SURVEY_MAX_CALLBACK_DELAY_S must be greater than 0 and less than CALLBACK_MARKER_TTL_S "
                f"(got {max_delay_s} and {marker_ttl_s})"
            )
        return cls(
            instance_id=_required(env, "CONNECT_INSTANCE_ID", "the Amazon Connect instance id"),
            contact_flow_id=_required(env, "SURVEY_CONTACT_FLOW_ID", "the id of the outbound survey contact flow"),
            source_phone_number=source,
            queue_id=queue,
            marker_table=_required(env, "CALLBACK_MARKER_TABLE", "the DynamoDB table of survey-call markers"),
            dead_letter_queue_url=_queue_url(env, "CTR_DLQ_URL"),
            marker_ttl_s=marker_ttl_s,
            max_callback_delay_s=max_delay_s,
            require_agent=_flag(env, "SURVEY_REQUIRE_AGENT", True),
            call_max_attempts=int(_number(env, "CONNECT_MAX_ATTEMPTS", 5, 1)),
            call_retry_base_s=_number(env, "CONNECT_RETRY_BASE_S", 0.5, 0),
            call_retry_max_s=_number(env, "CONNECT_RETRY_MAX_S", 8.0, 0),
        )


@dataclass(frozen=True)
class ResultSettings:
    """``update_survey_result``: where the rating goes."""

    responses_table: str
    customer_table: str
    rating_key: str
    timezone: dt.tzinfo

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ResultSettings:
        env = os.environ if env is None else env
        zone = _optional(env, "SURVEY_TIMEZONE") or "UTC"
        try:
            # UTC needs no time-zone database (some Lambda images have none).
            timezone: dt.tzinfo = dt.UTC if zone.upper() == "UTC" else ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"environment variable SURVEY_TIMEZONE={zone!r} is not a known IANA time zone "
                "(bundle the tzdata package if the runtime lacks it)"
            ) from None
        return cls(
            responses_table=_required(env, "SURVEY_RESPONSES_TABLE", "the DynamoDB table of survey responses"),
            customer_table=_required(env, "SURVEY_CUSTOMER_TABLE", "the SurveyCustomerInfo DynamoDB table"),
            rating_key=_optional(env, "SURVEY_RATING_KEY") or DEFAULT_RATING_KEY,
            timezone=timezone,
        )


@dataclass(frozen=True)
class CustomerLookupSettings:
    """``retrieve_customer_name``: the per-phone customer table."""

    customer_table: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CustomerLookupSettings:
        env = os.environ if env is None else env
        return cls(customer_table=_required(env, "SURVEY_CUSTOMER_TABLE", "the SurveyCustomerInfo DynamoDB table"))
