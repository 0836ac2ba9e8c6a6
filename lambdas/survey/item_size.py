"""The size DynamoDB counts for an item (attribute-value form), rounded up: for staying below its
400 KB item limit with room to spare.

DynamoDB's rules (Developer Guide, "Item sizes and formats"): an attribute counts its name's UTF-8
bytes plus its value; a string or binary its length; a number about one byte per two significant
digits plus one (counted here as one byte per digit plus one, which is never less); a boolean or
null one byte; a list or map three bytes plus one per element, plus the elements (and a map's
keys); a set the sum of its members. Every rounding here is upwards, so the estimate is never
smaller than what DynamoDB counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ITEM_LIMIT_BYTES = 400 * 1024


def value_size(value: Mapping[str, Any]) -> int:
    """The bytes of one attribute value, e.g. ``{"S": "abc"}`` -> 3."""
    (kind, inner), *_ = value.items()
    if kind in ("S", "B"):
        return len(inner.encode()) if isinstance(inner, str) else len(inner)
    if kind == "N":
        return len(str(inner)) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(element) for element in inner)
    if kind == "M":
        return 3 + sum(1 + len(key.encode()) + value_size(element) for key, element in inner.items())
    if kind in ("SS", "BS"):
        return sum(len(member.encode()) if isinstance(member, str) else len(member) for member in inner)
    if kind == "NS":
        return sum(len(str(member)) + 1 for member in inner)
    raise ValueError(f"not a DynamoDB attribute value type: {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The bytes of a whole item: every attribute's name and value."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())
