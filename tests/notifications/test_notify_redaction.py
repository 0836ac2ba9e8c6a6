"""``orchestration/notify/redaction.py``: an event's error text keeps the message, not secrets or numbers."""

from __future__ import annotations

import pytest

from entity_etl.orchestration.notifier import (
    redact,
)

pytestmark = pytest.mark.moto


def test_redact_keeps_the_message_and_drops_secrets_and_numbers() -> None:
    text = redact("login to mysql://etl:pa55@h:3306/db failed; token=abc123; call +44 20 7946 0958 or 4915112345678")
    assert text == "login to mysql://***:***@h:3306/db failed; token=***; call [number] or [number]"
    assert redact("run scheduled__2026-11-02T00:00:00+00:00 stage extract") == (
        "run scheduled__2026-11-02T00:00:00+00:00 stage extract"
    )
