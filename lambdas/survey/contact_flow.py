"""Amazon Connect contact-flow invocations: the event Connect sends, and the answer it accepts.

Connect invokes a flow's Lambda synchronously with ``{"Name": "ContactFlowEvent", "Details":
{"ContactData": {...}, "Parameters": {...}}}`` and expects a flat map of strings back, which the flow
reads as ``$.External.<key>``. Every answer here has ``result`` (``OK``, ``NOT_FOUND`` or ``ERROR``);
an error also has ``error_code``, for a "Check contact attributes" block to branch on, and a
``message``.
"""

from __future__ import annotations

from typing import Any, TypedDict

from .phone import is_e164


class FlowEndpoint(TypedDict, total=False):
    Address: str | None
    Type: str | None


class FlowQueue(TypedDict, total=False):
    ARN: str
    Name: str


class FlowContactData(TypedDict, total=False):
    Attributes: dict[str, str]
    Channel: str
    ContactId: str
    CustomerEndpoint: FlowEndpoint | None
    InitialContactId: str
    InitiationMethod: str
    InstanceARN: str
    PreviousContactId: str
    Queue: FlowQueue | None
    SystemEndpoint: FlowEndpoint | None


class FlowDetails(TypedDict, total=False):
    ContactData: FlowContactData
    Parameters: dict[str, str]


class ContactFlowEvent(TypedDict, total=False):
    Name: str
    Details: FlowDetails


class FlowError(Exception):
    """An answer for the flow's error branch: ``error_code`` and a human-readable ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def contact_data(event: ContactFlowEvent | dict[str, Any]) -> FlowContactData:
    details = event.get("Details") if isinstance(event, dict) else None
    data = details.get("ContactData") if isinstance(details, dict) else None
    if not isinstance(data, dict):
        raise FlowError("INVALID_EVENT", "the event has no Details.ContactData (not a contact-flow invocation)")
    contact_id = data.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise FlowError("INVALID_EVENT", "the event has no Details.ContactData.ContactId")
    return data  # type: ignore[return-value]


def _string_map(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parameter_or_attribute(event: ContactFlowEvent | dict[str, Any], key: str) -> Any:
    """``Details.Parameters[key]``, else ``Details.ContactData.Attributes[key]``, else None."""
    details = _string_map(event.get("Details"))
    parameters = _string_map(details.get("Parameters"))
    if key in parameters:
        return parameters[key]
    return _string_map(_string_map(details.get("ContactData")).get("Attributes")).get(key)


def attribute(data: FlowContactData, key: str) -> str | None:
    value = _string_map(data.get("Attributes")).get(key)
    return str(value) if value not in (None, "") else None


def customer_phone(data: FlowContactData, override: object = None) -> str:
    """The customer's number: ``override`` (a flow parameter) or ``CustomerEndpoint.Address``."""
    endpoint = _string_map(data.get("CustomerEndpoint"))
    phone = override if override not in (None, "") else endpoint.get("Address")
    if not phone:
        raise FlowError("MISSING_PHONE_NUMBER", f"contact {data.get('ContactId')} has no customer phone number")
    if not is_e164(phone):
        raise FlowError(
            "INVALID_PHONE_NUMBER", f"contact {data.get('ContactId')} has a customer number that is not E.164"
        )
    return str(phone)


def ok(result: str = "OK", **fields: object) -> dict[str, str]:
    return {"result": result, **{key: "" if value is None else str(value) for key, value in fields.items()}}


def error(code: str, message: str) -> dict[str, str]:
    return {"result": "ERROR", "error_code": code, "message": message}
