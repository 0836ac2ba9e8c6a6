"""``lambdas/survey/survey_data.py`` and ``item_size.py``: ``SurveyData`` stays well below DynamoDB's 400 KB
item limit (by entries and by bytes), and a concurrent append by the original code is not lost."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from lambdas.survey import clients, item_size, survey_data
from lambdas.survey import update_survey_result as survey_result

from support.survey_lambdas import CUSTOMER, CUSTOMER_TABLE, OTHER_CUSTOMER, RESPONSES_TABLE, flow_answer, sample, scan

pytestmark = pytest.mark.moto


def legacy_entries(count: int, comment: str = "") -> list[dict[str, Any]]:
    """``SurveyData`` as the original (unbounded) code left it after ``count`` surveys, oldest first."""
    entries = []
    for i in range(count):
        entry: dict[str, Any] = {"ContactID": {"S": f"{i:08d}-0000-4000-8000-000000000000"}}
        entry.update(Date={"S": "2026-01-01"}, NPS_Rating={"N": str(1 + i % 5)})
        if comment:
            entry["Comment"] = {"S": comment}
        entries.append({"M": entry})
    return entries


def moto_size(value: Any) -> int:
    """What moto counts for an item (its own rule; it refuses items over 405,000 bytes)."""
    kind, inner = next(iter(value.items())) if isinstance(value, dict) and len(value) == 1 else ("item", value)
    if kind == "item":
        return sum(len(name.encode()) + moto_size(v) for name, v in inner.items())
    if kind == "L":
        return sum(moto_size(v) for v in inner)
    if kind == "M":
        return sum(len(k.encode()) + moto_size(v) for k, v in inner.items())
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    return len(str(inner).encode())


def rating_event(contact_id: str, rating: int, phone: str = CUSTOMER) -> dict[str, Any]:
    event = sample("contact-flow-update-survey-result.json")
    event["Details"]["ContactData"]["ContactId"] = contact_id
    event["Details"]["ContactData"]["CustomerEndpoint"]["Address"] = phone
    event["Details"]["ContactData"]["Attributes"]["SurveyResponse"] = str(rating)
    return event


def raw_customer_item(phone: str = CUSTOMER) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=CUSTOMER_TABLE, Key={"PhoneNumber": {"S": phone}}, ConsistentRead=True
    )["Item"]
    return item


def test_survey_data_is_bounded_where_an_unbounded_list_would_pass_the_item_limit(survey: None) -> None:
    """A number the original code had appended surveys for until its item was just under 400 KB,
    then 10 more answers through the handler: unbounded, the item would pass the limit and the
    number could store nothing more. Every answer is stored, and the list is bounded.

    The sizes are DynamoDB's (``item_size``: its documented rules, exact for these entries). moto
    enforces a limit too, on a smaller count of its own (checked below on a copy of the item), and
    counts an attribute's old value with its new one while replacing it; so its refusal cannot stand
    in for DynamoDB's at exactly 400 KB."""
    client = boto3.client("dynamodb")
    # moto takes seconds for an item this size (DynamoDB milliseconds): the handler's own client, with
    # a read timeout moto can meet.
    clients._clients["dynamodb"] = boto3.client(
        "dynamodb", config=clients.DYNAMODB_CONFIG.merge(Config(read_timeout=120))
    )
    base = {"PhoneNumber": {"S": CUSTOMER}, "CustomerName": {"S": "Jane Doe"}, "SurveyData": {"L": []}}
    entry_bytes = 1 + item_size.value_size(legacy_entries(1)[0])
    count = (item_size.ITEM_LIMIT_BYTES - item_size.item_size(base)) // entry_bytes - 3
    history = legacy_entries(count)
    seeded = {**base, "SurveyData": {"L": history}}
    client.put_item(TableName=CUSTOMER_TABLE, Item=seeded)
    new = [(str(uuid.uuid4()), 1 + i % 5) for i in range(10)]

    for contact_id, rating in new:
        answer = flow_answer(survey_result.handler(rating_event(contact_id, rating)))
        assert (answer["result"], answer["rating"], answer["duplicate"]) == ("OK", str(rating), "false")

    new_entries = [
        {"M": {"ContactID": {"S": c}, "Date": {"S": answer["survey_date"]}, "NPS_Rating": {"N": str(r)}}}
        for c, r in new
    ]
    unbounded = {**seeded, "SurveyData": {"L": history + new_entries}}
    assert item_size.item_size(seeded) <= item_size.ITEM_LIMIT_BYTES < item_size.item_size(unbounded)
    assert {item["ContactId"]["S"] for item in scan(RESPONSES_TABLE)} == {c for c, _ in new}  # every answer
    item = raw_customer_item()
    kept = item["SurveyData"]["L"]
    assert len(kept) == survey_data.MAX_ENTRIES
    assert kept[-10:] == new_entries  # the newest, in answer order
    assert kept[:-10] == history[-(survey_data.MAX_ENTRIES - 10) :]  # then the most recent of the old ones
    assert set(item["ContactIDs"]["SS"]) == {c for c, _ in new}
    assert item["CustomerName"] == {"S": "Jane Doe"} and item["SurveyDataVersion"] == {"N": "10"}
    assert moto_size(item) <= item_size.item_size(item) <= survey_data.ITEM_BUDGET_BYTES < 400 * 1024

    # moto does enforce an item limit (405,000 bytes of its count): the original append, carried on, is refused.
    client.put_item(TableName=CUSTOMER_TABLE, Item={**seeded, "PhoneNumber": {"S": OTHER_CUSTOMER}})
    more = legacy_entries((405_000 - moto_size(seeded)) // moto_size(legacy_entries(1)[0]) + 2)
    with pytest.raises(client.exceptions.ClientError, match="exceeded the maximum allowed size"):
        client.update_item(
            TableName=CUSTOMER_TABLE,
            Key={"PhoneNumber": {"S": OTHER_CUSTOMER}},
            UpdateExpression="SET SurveyData = list_append(if_not_exists(SurveyData, :empty), :entries)",
            ExpressionAttributeValues={":empty": {"L": []}, ":entries": {"L": more}},
        )


def test_survey_data_is_bounded_by_bytes_as_well(survey: None) -> None:
    """Entries of another writer that are large: fewer than MAX_ENTRIES fit the byte budget."""
    client = boto3.client("dynamodb")
    history = legacy_entries(400, comment="x" * 500)  # ~235 KB: more than the byte budget
    client.put_item(TableName=CUSTOMER_TABLE, Item={"PhoneNumber": {"S": CUSTOMER}, "SurveyData": {"L": history}})
    contact = str(uuid.uuid4())
    assert flow_answer(survey_result.handler(rating_event(contact, 5)))["duplicate"] == "false"

    item = raw_customer_item()
    kept = item["SurveyData"]["L"]
    history_bytes = item_size.item_size({"SurveyData": item["SurveyData"], "ContactIDs": item["ContactIDs"]})
    assert survey_data.HISTORY_MAX_BYTES - 600 < history_bytes <= survey_data.HISTORY_MAX_BYTES
    assert 200 < len(kept) < 300 and kept[:-1] == history[-(len(kept) - 1) :]
    assert survey_data.entry_contact_id(kept[-1]) == contact


def test_a_concurrent_append_by_the_original_code_is_not_lost(survey: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between this function's read and its write, the original code appends an entry: the condition
    fails, the item is read again, and both entries are kept."""
    client = boto3.client("dynamodb")
    client.put_item(
        TableName=CUSTOMER_TABLE, Item={"PhoneNumber": {"S": CUSTOMER}, "SurveyData": {"L": legacy_entries(2)}}
    )
    other = {"M": {"ContactID": {"S": "concurrent"}, "Date": {"S": "2026-11-24"}, "NPS_Rating": {"N": "3"}}}
    real_read, reads = survey_data.read, []

    def read_then_race(table: str, phone: str) -> survey_data.History:
        history = real_read(table, phone)
        reads.append(len(history.entries))
        if len(reads) == 1:
            client.update_item(
                TableName=CUSTOMER_TABLE,
                Key={"PhoneNumber": {"S": CUSTOMER}},
                UpdateExpression="SET SurveyData = list_append(SurveyData, :entry)",
                ExpressionAttributeValues={":entry": {"L": [other]}},
            )
        return history

    monkeypatch.setattr(survey_data, "read", read_then_race)
    contact = str(uuid.uuid4())
    assert flow_answer(survey_result.handler(rating_event(contact, 4)))["duplicate"] == "false"

    assert reads == [2, 3]  # refused once, then read again
    ids = [survey_data.entry_contact_id(e) for e in raw_customer_item()["SurveyData"]["L"]]
    assert ids[-2:] == ["concurrent", contact] and len(ids) == 4
    assert len(scan(RESPONSES_TABLE)) == 1
