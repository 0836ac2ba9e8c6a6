"""retrieveCustomerName: the customer's name from ``SurveyCustomerInfo``, for a flow's greeting.

The number is ``Details.Parameters.PhoneNumber`` when the flow passes one, else the contact's
``CustomerEndpoint.Address``. Answers (strings, for ``$.External.CustomerName``):

* ``{"result": "OK", "CustomerName": "Jane"}``;
* ``{"result": "NOT_FOUND", "CustomerName": ""}`` for a number with no item or no name;
* ``{"result": "ERROR", "error_code": CODE, "message": ..., "CustomerName": ""}`` with CODE
  ``INVALID_EVENT``, ``MISSING_PHONE_NUMBER``, ``INVALID_PHONE_NUMBER`` or ``LOOKUP_FAILED``.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import clients
from .contact_flow import ContactFlowEvent, FlowError, contact_data, customer_phone, error, ok
from .logs import logger
from .phone import mask_phone
from .settings import CustomerLookupSettings


def handler(event: ContactFlowEvent | dict[str, Any], context: Any = None) -> dict[str, str]:
    logger.append_keys(request_id=getattr(context, "aws_request_id", None))
    settings = CustomerLookupSettings.from_env()
    where: dict[str, Any] = {}
    try:
        data = contact_data(event)
        where["contact_id"] = data["ContactId"]
        details = event.get("Details") or {}
        parameters = details.get("Parameters") if isinstance(details, dict) else None
        override = parameters.get("PhoneNumber") if isinstance(parameters, dict) else None
        phone = customer_phone(data, override)
        where["phone"] = mask_phone(phone)
    except FlowError as exc:
        logger.error(
            f"customer name lookup rejected ({exc.code}): {exc.message}", extra={**where, "error_code": exc.code}
        )
        return {**error(exc.code, exc.message), "CustomerName": ""}
    try:
        item = (
            clients.dynamodb()
            .get_item(
                TableName=settings.customer_table,
                Key={"PhoneNumber": {"S": phone}},
                ProjectionExpression="CustomerName",
            )
            .get("Item")
        )
    except (ClientError, BotoCoreError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
        logger.exception(f"customer name lookup failed ({code})", extra={**where, "error_code": code})
        return {**error("LOOKUP_FAILED", f"the customer table could not be read ({code})"), "CustomerName": ""}
    name = ((item or {}).get("CustomerName") or {}).get("S") or ""
    logger.info("customer name lookup", extra={**where, "found": bool(name)})
    return ok("OK" if name else "NOT_FOUND", CustomerName=name)
