"""The one redaction function: credentials, secret-looking values and phone numbers out of any text.

Dependency-free (standard library only) so that the stage runtime, ``etlctl``, the Airflow notifier
and the Teams Lambda (which ships a copy of this file, see ``lambdas/notifications``) all apply the
same rules to everything they write out: the run store's ``error``, ``etlctl``'s error line, log
records, SNS events and Teams cards.

What it hides:

* the userinfo of a URI, whatever the password holds (``mysql://etl:p/a?s#s@w:rd@host`` ->
  ``mysql://***:***@host``; split at the last ``@`` of the URI, so a password with ``@`` is hidden too);
* ``Authorization:``/``Proxy-Authorization:`` header values and any ``Bearer <token>``;
* the value after a key that names a secret (``password``, ``passwd``, ``pwd``, ``secret``, ``token``,
  ``api_key``, ``access_key``, ``private_key``, ``credential``, anywhere in the key, any case):
  ``db_password=x``, ``Password: x``, ``"client_secret": "x"``, ``AWS_SECRET_ACCESS_KEY=x``;
* AWS access key ids (``AKIA…``/``ASIA…``);
* phone numbers: E.164 with or without spacing (``+49 30 1234567``, ``+4915112345678``, ``0049 30
  1234567``), national formats with a trunk ``0`` (``030 1234567``, ``(030) 123-4567``,
  ``0151-23456789``), and bare runs of 10 to 15 digits (a number stored without its ``+``), except
  10 or 13 digits starting with ``1`` (Unix times in seconds and milliseconds).

What it keeps: counts and other numbers of up to 9 digits, numbers with thousands separators,
dates, ISO times and offsets (``2026-11-02T00:00:00+00:00``), durations, decimals, UUIDs, AWS
account ids inside ARNs (``:123456789012:``) and long digit runs such as Kinesis sequence numbers.
A password with whitespace in an unquoted URI is only hidden up to the whitespace.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
NUMBER_MASK = "[number]"

_SECRET_KEY = r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)"  # noqa: S105 - key names, not a password

_URI_USERINFO = re.compile(r"(?<=://)[^\s/@:'\"]*:\S*@")
_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(bearer|basic|digest|negotiate|token|aws4-hmac-sha256)\s+)?[^\r\n\"']+"
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_KEY_VALUE = re.compile(
    r"(?i)(?<![\w.-])(?P<key>[\w.-]*" + _SECRET_KEY + r"[\w.-]*)(?P<sep>[\"']?\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s\"',;&}\])]+)"
)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# "+" or "00", a country code, then digit groups, each after one space, "-", "." or "/" or in
# parentheses (every group starts with a separator: no exponential backtracking on long digit runs). Not after a word character or "+" (the "+00:00" of an ISO time has no digit 1-9 next).
_INTERNATIONAL = re.compile(r"(?<![\w+])(?:\+|\b00)[1-9]\d*(?:[ \-./]?\(\d+\)\d*|[ \-./]\d+)*(?!\w)")
# A trunk "0" and an area code (optionally in parentheses), one separator, then a subscriber part
# that starts with at least three digits. Not inside a date, time, decimal, path or id.
_NATIONAL = re.compile(
    r"(?<![\w.:/+\-])(?:\(0[1-9]\d{0,4}\)|0[1-9]\d{0,4})[ \-/]?\d{3,}(?:[ \-]\d{2,})*(?![\w:/\-]|\.\d)"
)
_BARE_DIGITS = re.compile(r"(?<![\w.,:/+\-])\d{10,15}(?![\w,:/\-]|\.\d)")


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _mask_international(match: re.Match[str]) -> str:
    return NUMBER_MASK if _digits(match.group(0)) >= 7 else match.group(0)


def _mask_national(match: re.Match[str]) -> str:
    return NUMBER_MASK if 8 <= _digits(match.group(0)) <= 15 else match.group(0)


def _mask_bare(match: re.Match[str]) -> str:
    digits = match.group(0)
    if digits[0] == "1" and len(digits) in (10, 13):  # a Unix time in seconds or milliseconds
        return digits
    return NUMBER_MASK


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{match.group('sep')}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` without credentials, secret-looking values and phone numbers (see the module doc)."""
    if not text:
        return text
    text = _URI_USERINFO.sub(f"{MASK}:{MASK}@", text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + MASK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KEY_VALUE.sub(_mask_value, text)
    text = _AWS_KEY_ID.sub("[aws-key-id]", text)
    text = _INTERNATIONAL.sub(_mask_international, text)
    text = _NATIONAL.sub(_mask_national, text)
    return _BARE_DIGITS.sub(_mask_bare, text)


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message, exception text and stack go out redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler's own error path
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a :class:`RedactingFilter` to the handlers of ``logger`` (the root logger) and to
    :data:`logging.lastResort`, the handler that writes when none is configured. Idempotent."""
    handlers = list((logger or logging.getLogger()).handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
