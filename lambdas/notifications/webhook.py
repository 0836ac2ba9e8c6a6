"""The Teams webhook: its URL from Secrets Manager, and the POST with retries (429 ``Retry-After``,
5xx and network errors with bounded exponential backoff).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from clients import client, float_env
from json_log import log
from undeliverable import Undeliverable

_webhook_cache: dict[str, str] = {}


def _check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url
    raise Undeliverable("webhook_secret_invalid", "the secret is not an https URL")


def webhook_url() -> str:
    """The webhook URL from Secrets Manager, read once per container (and again after a 401/403/404)."""
    secret_id = os.environ.get("TEAMS_WEBHOOK_SECRET_ID")
    if not secret_id:
        raise Undeliverable("webhook_secret_unavailable", "TEAMS_WEBHOOK_SECRET_ID is not set")
    if secret_id in _webhook_cache:
        return _webhook_cache[secret_id]
    try:
        value = client("secretsmanager").get_secret_value(SecretId=secret_id).get("SecretString") or ""
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
        raise Undeliverable("webhook_secret_unavailable", f"secret {secret_id}: {code}") from None
    value = value.strip()
    if value.startswith("{"):
        try:
            document = json.loads(value)
        except ValueError:
            raise Undeliverable("webhook_secret_invalid", f"secret {secret_id} is not valid JSON") from None
        value = str(document.get("webhook_url") or document.get("url") or "") if isinstance(document, dict) else ""
    if not value:
        raise Undeliverable("webhook_secret_invalid", f"secret {secret_id} holds no webhook URL")
    _webhook_cache[secret_id] = _check_webhook_url(value)
    return _webhook_cache[secret_id]


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def post_card(
    url: str,
    payload: Mapping[str, Any],
    *,
    message_id: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    time_left_s: Callable[[], float] | None = None,
) -> int:
    """POST ``payload``; return the number of attempts it took. Raises :class:`Undeliverable`."""
    max_attempts = max(1, int(float_env("TEAMS_MAX_ATTEMPTS", 5)))
    base = float_env("TEAMS_RETRY_BASE_S", 1.0)
    longest = float_env("TEAMS_RETRY_MAX_S", 20.0)
    retry_after_cap = float_env("TEAMS_RETRY_AFTER_MAX_S", 30.0)
    timeout = float_env("TEAMS_HTTP_TIMEOUT_S", 10.0)
    body = json.dumps(payload).encode("utf-8")
    last = "no attempt"
    for attempt in range(1, max_attempts + 1):
        request = urllib.request.Request(  # noqa: S310 - the URL's scheme is checked (https, or http to loopback)
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        delay = min(longest, base * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
                status = response.status
            log(logging.INFO, "delivered to Teams", message_id=message_id, status=status, attempt=attempt)
            return attempt
        except urllib.error.HTTPError as exc:
            status = exc.code
            last = f"HTTP {status}"
            if status == 429:
                asked = _retry_after_s(exc.headers.get("Retry-After") if exc.headers else None)
                delay = min(retry_after_cap, asked) if asked is not None else delay
            elif status < 500:
                if status in (401, 403, 404):
                    _webhook_cache.clear()  # a rotated or deleted webhook: read the secret again next time
                raise Undeliverable("webhook_rejected", f"the webhook answered HTTP {status}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(exc).__name__}: {type(reason).__name__ if not isinstance(reason, str) else reason}"
        if attempt == max_attempts:
            break
        if time_left_s is not None and time_left_s() < delay + timeout + 1:
            raise Undeliverable("delivery_failed", f"{last}; not enough time left for attempt {attempt + 1}")
        log(
            logging.WARNING,
            "Teams delivery failed; retrying",
            message_id=message_id,
            error=last,
            attempt=attempt,
            delay_s=round(delay, 3),
        )
        sleep(delay)
    raise Undeliverable("delivery_failed", f"{last} after {max_attempts} attempts")


def forget_webhook_url() -> None:
    """Read the secret again next time (a new container, as far as this module knows)."""
    _webhook_cache.clear()
