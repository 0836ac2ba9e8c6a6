"""Teams cards under hostile input: Markdown in values is escaped, secrets are redacted, and the
card as POSTed stays under the webhook's size limit with a visible truncation marker."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import pytest

from support.teams_lambda import load_teams_handler


@pytest.fixture(scope="module")
def lam() -> ModuleType:
    return load_teams_handler("teams_card_limits_handler")


def _event(**overrides: Any) -> str:
    event: dict[str, Any] = {
        "schema_version": 1,
        "kind": "task_failed",
        "entity": "de",
        "dag_id": "etl_de",
        "task_id": "load_target",
        "stage": "load_target",
        "run_id": "manual__2026-12-01T00:00:00+00:00",
        "error": {"type": "StageError", "message": "de: load_target: boom"},
    }
    event.update(overrides)
    return json.dumps(event)


def _values(card: dict[str, Any]) -> list[str]:
    """Every text and fact value of the card's body."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("text", "value") and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return out


def test_markdown_in_error_values_is_escaped(lam: ModuleType) -> None:
    hostile = "de: load_target: row **bold** [click](https://evil.example) `code` _x_ # h"
    card, _ = lam.build_card(_event(error={"type": "StageError", "message": hostile}))
    texts = " ".join(_values(card))
    assert "[click](https://evil.example)" not in texts
    assert "**bold**" not in texts
    assert r"\*\*bold\*\*" in texts
    assert r"\[click\]\(https://evil.example\)" in texts
    assert r"\`code\`" in texts


def test_list_marker_at_line_start_is_escaped(lam: ModuleType) -> None:
    assert lam.escape_markdown("- item\n1. first") == "\\- item\n1\\. first"


def test_secret_in_error_is_redacted_on_the_card(lam: ModuleType) -> None:
    message = "de: extract: cannot connect mysql://etl:s3cr/t?#x@db.example:3306/src db_password=hunter2"
    card, _ = lam.build_card(_event(error={"type": "StageError", "message": message}))
    posted = json.dumps(card)
    assert "s3cr/t" not in posted
    assert "hunter2" not in posted


def test_huge_values_keep_the_card_under_the_limit_with_a_marker(lam: ModuleType) -> None:
    huge = "x" * 200_000
    card, _ = lam.build_card(_event(error={"type": "StageError", "message": huge}, run_id="r" * 50_000))
    size = len(json.dumps(card).encode("utf-8"))
    assert size <= lam.MAX_CARD_BYTES < 28 * 1024
    assert any(v.endswith(lam.TRUNCATED) for v in _values(card))


def test_many_escaped_characters_still_fit(lam: ModuleType) -> None:
    # Escaping doubles every character here: the size check runs on the escaped card.
    dense = "*_[]()" * 20_000
    card, _ = lam.build_card(_event(error={"type": "StageError", "message": dense}))
    assert len(json.dumps(card).encode("utf-8")) <= lam.MAX_CARD_BYTES


def test_a_small_card_is_not_truncated(lam: ModuleType) -> None:
    card, _ = lam.build_card(_event())
    assert not any(lam.TRUNCATED in v for v in _values(card))
    assert any("boom" in v for v in _values(card))
