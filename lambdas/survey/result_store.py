"""Store one survey answer: the response item and the per-phone ``SurveyData`` entry, in one transaction.

``TransactWriteItems`` with two conditional writes, applied together or not at all:

1. ``Put`` the response item (``responses.response_item``) if no item has this ``ContactId`` yet;
2. ``Update`` ``SurveyCustomerInfo[PhoneNumber]``: ``SurveyData`` with the new
   ``{"ContactID", "Date", "NPS_Rating"}`` entry appended, bounded (``survey_data``), if the item is
   unchanged since it was read. Left out when the list already names this contact.

Connect retries a flow's Lambda (up to 3 times); a retry finds condition 1 false, stores nothing,
and answers with the stored item (a consistent ``GetItem``): the first stored rating stands. When
condition 2 fails (another writer changed the customer item) or the transaction conflicts, the
customer item is read again and the transaction retried, ``ATTEMPTS`` times in all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from . import clients, survey_data
from .responses import DATE_KEY, TABLE_KEY, response_item
from .settings import ResultSettings

ATTEMPTS = 4


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


@dataclass(frozen=True)
class Stored:
    """What is stored for the survey call: this answer (``duplicate`` False) or an earlier one."""

    rating: int
    survey_date: str
    duplicate: bool


def _reasons(exc: ClientError) -> list[str]:
    return [str(reason.get("Code") or "None") for reason in exc.response.get("CancellationReasons", [])]


def _put(answer: Answer, settings: ResultSettings) -> dict[str, Any]:
    return {
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


def _entry(answer: Answer) -> dict[str, Any]:
    return {
        "M": {
            "ContactID": {"S": answer.contact_id},
            "Date": {"S": answer.survey_date},
            "NPS_Rating": {"N": str(answer.rating)},
        }
    }


def stored_answer(contact_id: str, settings: ResultSettings) -> Stored | None:
    item = (
        clients.dynamodb()
        .get_item(TableName=settings.responses_table, Key={TABLE_KEY: {"S": contact_id}}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return None
    return Stored(rating=int(item["Rating"]["N"]), survey_date=item[DATE_KEY]["S"], duplicate=True)


def store_answer(answer: Answer, settings: ResultSettings) -> Stored:
    """Store the answer, or find the one stored before for this survey call (a retry)."""
    attempt = 1
    while True:
        history = survey_data.read(settings.customer_table, answer.phone_number)
        writes = [_put(answer, settings)]
        if not history.names(answer.contact_id):  # else another writer listed it: store the response alone
            writes.append(survey_data.update(settings.customer_table, history, _entry(answer), answer.contact_id))
        try:
            clients.dynamodb().transact_write_items(TransactItems=writes)
            return Stored(rating=answer.rating, survey_date=answer.survey_date, duplicate=False)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = _reasons(exc)
            if reasons[:1] == ["ConditionalCheckFailed"]:
                stored = stored_answer(answer.contact_id, settings)
                if stored is not None:
                    return stored
            elif reasons[1:2] != ["ConditionalCheckFailed"] and "TransactionConflict" not in reasons:
                raise
            if attempt >= ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
            attempt += 1
