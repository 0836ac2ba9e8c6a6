"""Adaptive Cards for Teams: the message envelope, escaping, redaction and truncation of every value."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from redaction import redact

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_FACT_CHARS = 600
MAX_NOTE_CHARS = 2000
MAX_URL_CHARS = 2000
#: Teams webhooks (Workflows and incoming webhooks) reject a message over about 28 KB; the card's JSON
#: body, as POSTed, is kept under this many bytes by truncating the longest values.
MAX_CARD_BYTES = 27_000
TRUNCATED = "… (truncated; the full text is in the run's log)"

# Adaptive Card TextBlock and FactSet text is a Markdown subset (bold, italic, lists, links); Teams
# renders more (code, strike-through, quotes, headings). Every value from data or errors is
# backslash-escaped, so a value shows as it is and cannot format, link or break the card.
_MARKDOWN_INLINE = re.compile(r"([\\`*_~\[\]()<>#|{}!])")
_MARKDOWN_LINE_START = re.compile(r"(?m)^(\s*)([-+=]|\d+(?=[.)]))")


def escape_markdown(text: str) -> str:
    """``text`` with its Markdown characters (and leading list markers) backslash-escaped."""
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)

    def marker(match: re.Match[str]) -> str:  # "1." -> "1\.", "- " -> "\- "
        indent, mark = match.groups()
        return indent + (mark + "\\" if mark.isdigit() else "\\" + mark)

    return _MARKDOWN_LINE_START.sub(marker, text)


def _text(value: Any, limit: int = MAX_FACT_CHARS) -> str:
    """A value from data or an error, as card text: redacted, then cut to ``limit``, then escaped."""
    text = redact(str(value))
    if len(text) <= limit:
        return escape_markdown(text)
    return escape_markdown(text[: max(limit - len(TRUNCATED), 1)]) + TRUNCATED


def _facts(pairs: list[tuple[str, Any]], limit: int = MAX_FACT_CHARS) -> dict[str, Any]:
    return {
        "type": "FactSet",
        "facts": [{"title": title, "value": _text(value, limit)} for title, value in pairs if value not in (None, "")],
    }


def open_url(title: str, url: Any) -> dict[str, Any] | None:
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or urlsplit(url).scheme not in ("https", "http"):
        return None
    return {"type": "Action.OpenUrl", "title": title, "url": url}


def card_message(
    title: str, color: str, facts: list[tuple[str, Any]], actions: list[dict[str, Any] | None], note: str | None = None
) -> dict[str, Any]:
    """The Teams Workflows webhook message: one Adaptive Card 1.4 in a ``message`` envelope.

    Every value is redacted and Markdown-escaped; values are cut (with :data:`TRUNCATED`) to keep
    the JSON as POSTed under :data:`MAX_CARD_BYTES`, halving the limit until the card fits.
    """
    limit, note_limit = MAX_FACT_CHARS, MAX_NOTE_CHARS
    while True:
        message = _card(title, color, facts, actions, note, limit, note_limit)
        if len(json.dumps(message).encode("utf-8")) <= MAX_CARD_BYTES or limit <= 2 * len(TRUNCATED):
            return message
        limit, note_limit = limit // 2, note_limit // 2


def _card(
    title: str,
    color: str,
    facts: list[tuple[str, Any]],
    actions: list[dict[str, Any] | None],
    note: str | None,
    limit: int,
    note_limit: int,
) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _text(title, 200),
            "weight": "Bolder",
            "size": "Medium",
            "color": color,
            "wrap": True,
        },
        _facts(facts, limit),
    ]
    if note:
        body.append(
            {
                "type": "TextBlock",
                "text": _text(note, note_limit),
                "wrap": True,
                "fontType": "Monospace",
                "size": "Small",
            }
        )
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
        "actions": [a for a in actions if a is not None],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}],
    }
