"""``SurveyCustomerInfo.SurveyData``: the per-phone survey history, kept well below DynamoDB's item limit.

The original design appends ``{"ContactID", "Date", "NPS_Rating"}`` to one list per phone number, in
one item, which DynamoDB caps at 400 KB: unbounded, a number that has answered a few thousand
surveys could store no more. Here each write keeps the most recent entries only:

* at most ``MAX_ENTRIES`` (500) entries, oldest dropped first, and
* ``SurveyData`` and ``ContactIDs`` together at most ``HISTORY_MAX_BYTES`` (150,000 bytes), and the
  whole item at most ``ITEM_BUDGET_BYTES`` (300,000 bytes, counted as ``item_size`` does); the
  newest entry is always kept.

Every answer stays in ``SurveyResponses`` (one item per answer, unbounded); only this convenience
copy is bounded. ``ContactIDs`` (the duplicate guard) holds the ids this code appended that are
still in the list.

The write is read-modify-write: a consistent ``GetItem``, then ``SET`` of the new list on the
condition that the item is unchanged (``SurveyDataVersion`` as read, and ``SurveyData`` of the
length read, which also catches an append by the original code). A concurrent writer makes the
condition fail and ``result_store`` reads again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import clients
from .item_size import item_size, value_size

MAX_ENTRIES = 500
HISTORY_MAX_BYTES = 150_000
ITEM_BUDGET_BYTES = 300_000
DATA, IDS, VERSION = "SurveyData", "ContactIDs", "SurveyDataVersion"
_VERSION_BYTES = len(VERSION) + 21  # the version number, at its largest


def entry_contact_id(entry: Any) -> str | None:
    value = ((entry.get("M") or {}).get("ContactID") or {}) if isinstance(entry, dict) else {}
    contact_id = value.get("S") if isinstance(value, dict) else None
    return contact_id if isinstance(contact_id, str) else None


@dataclass(frozen=True)
class History:
    """One phone number's item as read: ``entries`` in attribute-value form, oldest first."""

    phone_number: str
    item: dict[str, Any]
    entries: list[Any]
    contact_ids: frozenset[str]
    version: int | None

    def names(self, contact_id: str) -> bool:
        return contact_id in self.contact_ids or any(entry_contact_id(e) == contact_id for e in self.entries)


def read(table: str, phone_number: str) -> History:
    item = (
        clients.dynamodb()
        .get_item(TableName=table, Key={"PhoneNumber": {"S": phone_number}}, ConsistentRead=True)
        .get("Item")
        or {}
    )
    data = item.get(DATA) or {}
    version = (item.get(VERSION) or {}).get("N")
    return History(
        phone_number=phone_number,
        item=item,
        entries=list(data.get("L") or []) if isinstance(data, dict) else [],
        contact_ids=frozenset((item.get(IDS) or {}).get("SS") or []),
        version=int(version) if version is not None else None,
    )


def bounded(entries: list[Any], contact_ids: set[str], budget: int) -> tuple[list[Any], list[str]]:
    """The newest entries within ``MAX_ENTRIES`` and ``budget`` bytes (with their ``ContactIDs``)."""
    kept = entries[-MAX_ENTRIES:]
    ids = [entry_contact_id(entry) for entry in kept]
    sizes = [
        1 + value_size(entry) + (len(i.encode()) if i in contact_ids else 0) for entry, i in zip(kept, ids, strict=True)
    ]
    total = len(DATA) + len(IDS) + 3 + sum(sizes)
    start = 0
    while total > budget and start < len(kept) - 1:
        total -= sizes[start]
        start += 1
    kept_ids = [i for i in ids[start:] if i is not None and i in contact_ids]
    return kept[start:], sorted(set(kept_ids))


def update(table: str, history: History, entry: dict[str, Any], contact_id: str) -> dict[str, Any]:
    """The transaction's ``Update``: the bounded list with ``entry`` appended, if the item is unchanged."""
    others = {name: value for name, value in history.item.items() if name not in (DATA, IDS, VERSION)}
    other_bytes = item_size({"PhoneNumber": {"S": history.phone_number}, **others}) + _VERSION_BYTES
    budget = min(HISTORY_MAX_BYTES, ITEM_BUDGET_BYTES - other_bytes)
    entries, ids = bounded([*history.entries, entry], {*history.contact_ids, contact_id}, budget)
    values: dict[str, Any] = {
        ":data": {"L": entries},
        ":ids": {"SS": ids},
        ":version": {"N": str((history.version or 0) + 1)},
    }
    if history.version is None:
        conditions = ["attribute_not_exists(#version)"]
    else:
        conditions = ["#version = :read_version"]
        values[":read_version"] = {"N": str(history.version)}
    if "L" in (history.item.get(DATA) or {}):
        conditions.append("size(#data) = :read_length")
        values[":read_length"] = {"N": str(len(history.entries))}
    elif DATA not in history.item:
        conditions.append("attribute_not_exists(#data)")
    return {
        "Update": {
            "TableName": table,
            "Key": {"PhoneNumber": {"S": history.phone_number}},
            "UpdateExpression": "SET #data = :data, #ids = :ids, #version = :version",
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": {"#data": DATA, "#ids": IDS, "#version": VERSION},
            "ExpressionAttributeValues": values,
        }
    }
