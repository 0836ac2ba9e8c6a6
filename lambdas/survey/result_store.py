"""Store one survey answer: the response item and the per-phone ``SurveyData`` entry, in one transaction.

``TransactWriteItems`` with two conditional writes, applied together or not at all:

1. ``Put`` the response item (``responses.response_item``) if no item has this ``ContactId`` yet;
2. ``Update`` ``SurveyCustomerInfo[PhoneNumber]``: append ``{"ContactID", "Date", "NPS_Rating"}`` to
   ``SurveyData`` (created if absent) and add the contact id to the string set ``ContactIDs``, if
   ``ContactIDs`` does not already hold it.

Connect retries a flow's Lambda (up to 3 times); a retry finds condition 1 false and stores nothing:
one response item and one list entry per survey call, whatever the retries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from . import clients
from .responses import TABLE_KEY, response_item
from .settings import ResultSettings

CONFLICT_RETRIES = 3


@dataclass(frozen=True)
class Answer:
    contact_id: str
    phone_number: str
    rating: int
    survey_date: str
    responded_at: str
    original_contact_id: str | None = None
    agent: str | None = None
    queue: str | None = None


def _reasons(exc: ClientError) -> list[str]:
    return [str(reason.get("Code") or "None") for reason in exc.response.get("CancellationReasons", [])]


def store_answer(answer: Answer, settings: ResultSettings) -> bool:
    """True when stored now; False when this survey call's answer was stored before (a retry)."""
    put = {
        "Put": {
            "TableName": settings.responses_table,
            "Item": response_item(
                contact_id=answer.contact_id,
                phone_number=answer.phone_number,
                survey_date=answer.survey_date,
                responded_at=answer.responded_at,
                rating=answer.rating,
                original_contact_id=answer.original_contact_id,
                agent=answer.agent,
                queue=answer.queue,
            ),
            "ConditionExpression": "attribute_not_exists(#key)",
            "ExpressionAttributeNames": {"#key": TABLE_KEY},
        }
    }
    entry = {
        "M": {
            "ContactID": {"S": answer.contact_id},
            "Date": {"S": answer.survey_date},
            "NPS_Rating": {"N": str(answer.rating)},
        }
    }
    append = {
        "Update": {
            "TableName": settings.customer_table,
            "Key": {"PhoneNumber": {"S": answer.phone_number}},
            "UpdateExpression": "SET #data = list_append(if_not_exists(#data, :empty), :entry) ADD #ids :ids",
            "ConditionExpression": "attribute_not_exists(#ids) OR NOT contains(#ids, :id)",
            "ExpressionAttributeNames": {"#data": "SurveyData", "#ids": "ContactIDs"},
            "ExpressionAttributeValues": {
                ":empty": {"L": []},
                ":entry": {"L": [entry]},
                ":ids": {"SS": [answer.contact_id]},
                ":id": {"S": answer.contact_id},
            },
        }
    }
    writes = [put, append]
    attempt = 1
    while True:
        try:
            clients.dynamodb().transact_write_items(TransactItems=writes)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = _reasons(exc)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False  # the response item exists, and was written with its list entry
            if len(writes) == 2 and reasons[1:2] == ["ConditionalCheckFailed"]:
                writes = [put]  # the list already names this contact (an older writer): store the response alone
                continue
            if "TransactionConflict" in reasons and attempt < CONFLICT_RETRIES:
                time.sleep(0.05 * attempt)
                attempt += 1
                continue
            raise
