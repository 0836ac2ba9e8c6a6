"""Phone numbers: E.164 validation and masking for logs.

A full phone number never reaches a log line: log fields go through :func:`mask_phone`, and every
formatted line goes through :func:`mask_phones_in_text` as a second guard (see ``logs.py``).
"""

from __future__ import annotations

import re

E164 = re.compile(r"\+[1-9][0-9]{1,14}")  # ASCII digits only: \d would take "+4٤١..."
# An E.164-looking run inside any text. Kinesis sequence numbers, timestamps, account ids and contact
# ids carry no "+", so they are left alone.
_E164_IN_TEXT = re.compile(r"\+\d{6,15}(?!\d)")


def is_e164(value: object) -> bool:
    return isinstance(value, str) and E164.fullmatch(value) is not None


def mask_phone(value: object) -> str:
    """``+441632960123`` -> ``+44*******123``: country code and last three digits, nothing else.

    Anything shorter than eight digits, or not a phone number at all, is masked whole.
    """
    if value is None or value == "":
        return ""
    text = str(value)
    prefix, digits = ("+", text[1:]) if text.startswith("+") else ("", text)
    if len(digits) < 8 or not digits.isdigit():
        return prefix + "*" * min(len(digits), 16)
    return f"{prefix}{digits[:2]}{'*' * (len(digits) - 5)}{digits[-3:]}"


def mask_phones_in_text(text: str) -> str:
    """Mask every E.164-looking number in ``text`` (a formatted log line)."""
    return _E164_IN_TEXT.sub(lambda match: mask_phone(match.group(0)), text)
