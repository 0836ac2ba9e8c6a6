"""UpdateSurveyResult: the survey flow's rating -> DynamoDB, once per survey call.

Invoked by the outbound survey flow after "How likely are you to recommend us to a friend, 1 to 5".
The rating is read from ``Details.Parameters[SURVEY_RATING_KEY]``, else from the contact attribute of
that name (default ``SurveyResponse``, the attribute the original AWS walkthrough's flow stores the
keyed-in digit in); the phone number from ``CustomerEndpoint.Address``; the surveyed
call from the attributes ``OriginalContactID``, ``OriginalAgent`` and ``OriginalQueue`` that
``process_ctr_stream`` set on the survey call.

Answers (all values strings, for ``$.External.*``):

* ``{"result": "OK", "rating": "4", "survey_date": "2026-11-24", "duplicate": "false"}``;
  ``duplicate`` is ``"true"`` when the survey call's answer was already stored (Connect retried, or
  the flow invoked again): then ``rating`` and ``survey_date`` are the STORED ones, whatever this
  invocation sent (the first stored answer stands);
* ``{"result": "ERROR", "error_code": CODE, "message": ...}`` with CODE one of ``MISSING_RATING``,
  ``INVALID_RATING``, ``INVALID_EVENT``, ``MISSING_PHONE_NUMBER``, ``INVALID_PHONE_NUMBER``,
  ``STORE_FAILED`` (DynamoDB failed after botocore's retries; invoking again is safe).

A missing configuration variable raises (the flow takes its Error branch, the function's Errors
metric counts it).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .contact_flow import ContactFlowEvent, FlowError, attribute, contact_data, customer_phone, error, ok
from .contact_flow import parameter_or_attribute as flow_value
from .logs import logger
from .phone import mask_phone
from .rating import RatingError, parse_rating
from .result_store import Answer, store_answer
from .settings import ResultSettings


def handler(event: ContactFlowEvent | dict[str, Any], context: Any = None) -> dict[str, str]:
    logger.append_keys(request_id=getattr(context, "aws_request_id", None))
    settings = ResultSettings.from_env()
    contact_id: str | None = None
    where: dict[str, Any] = {}
    try:
        data = contact_data(event)
        contact_id = data["ContactId"]
        where["contact_id"] = contact_id
        where["original_contact_id"] = attribute(data, "OriginalContactID")
        rating = parse_rating(flow_value(event, settings.rating_key))
        phone = customer_phone(data)
        where["phone"] = mask_phone(phone)
    except (FlowError, RatingError) as exc:
        subject = f"contact {contact_id}" if contact_id else "an invocation without a contact id"
        logger.error(
            f"survey result for {subject} rejected ({exc.code}): {exc.message}", extra={**where, "error_code": exc.code}
        )
        return error(exc.code, exc.message)

    now = dt.datetime.now(dt.UTC)
    answer = Answer(
        contact_id=contact_id,
        phone_number=phone,
        rating=rating,
        survey_date=now.astimezone(settings.timezone).date().isoformat(),
        responded_at=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        original_contact_id=where["original_contact_id"],
        agent=attribute(data, "OriginalAgent"),
        queue=attribute(data, "OriginalQueue"),
    )
    try:
        stored = store_answer(answer, settings)
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        logger.exception(
            f"survey result for contact {contact_id} NOT stored ({code})", extra={**where, "error_code": code}
        )
        return error("STORE_FAILED", f"the survey result could not be stored ({code}); invoking again is safe")
    if not stored.duplicate:
        logger.info(
            f"survey result stored for contact {contact_id}",
            extra={**where, "rating": rating, "survey_date": answer.survey_date},
        )
    else:
        logger.info(
            f"survey result for contact {contact_id} was already stored; repeated invocation ignored",
            extra={**where, "rating": stored.rating, "ignored_rating": rating, "reason": "duplicate"},
        )
    return ok(rating=stored.rating, survey_date=stored.survey_date, duplicate=str(stored.duplicate).lower())
