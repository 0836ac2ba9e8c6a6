"""Contact trace records (CTRs) from the Kinesis stream: decoding and the call-back decision.

Amazon Connect puts each CTR on the stream as one JSON document (base64 in the Lambda event). The
same contact can arrive more than once: Kinesis redelivers, and Connect streams a new version of a
CTR when a contact is updated after it ended. Deciding is pure (no AWS calls); calling is
``outbound_call``'s job, made idempotent by ``process_ctr_stream``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from .phone import is_e164

CALLBACK_METHODS = ("INBOUND", "TRANSFER")
# Set on our own survey calls, so that their CTRs (and any transfer out of the survey flow) are never
# surveyed in turn. The survey calls are also initiated by API, which is never called back.
SURVEY_CALL_ATTRIBUTE = "SurveyCall"
OPT_IN_ATTRIBUTE = "SurveyCandidate"


class Endpoint(TypedDict, total=False):
    Address: str | None
    Type: str | None


class AgentInfo(TypedDict, total=False):
    ARN: str
    Username: str
    ConnectedToAgentTimestamp: str


class QueueInfo(TypedDict, total=False):
    ARN: str
    Name: str


class ContactTraceRecord(TypedDict, total=False):
    """The CTR fields this package reads (Connect's CTR data model; every other field is ignored)."""

    AWSAccountId: str
    AWSContactTraceRecordFormatVersion: str
    Agent: AgentInfo | None
    Attributes: dict[str, str]
    Channel: str
    ContactId: str
    CustomerEndpoint: Endpoint | None
    DisconnectTimestamp: str | None
    InitialContactId: str | None
    InitiationMethod: str
    InitiationTimestamp: str | None
    InstanceARN: str
    LastUpdateTimestamp: str | None
    NextContactId: str | None
    PreviousContactId: str | None
    Queue: QueueInfo | None
    SystemEndpoint: Endpoint | None


class BadRecord(Exception):
    """A record that can never be processed; ``code`` is short and machine-readable."""

    def __init__(self, code: str, detail: str, contact_id: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.contact_id = contact_id


def decode_ctr(data: object) -> ContactTraceRecord:
    """Kinesis ``data`` (base64) -> a CTR. Raises :class:`BadRecord` saying what is wrong."""
    if not isinstance(data, str) or not data:
        raise BadRecord("no_data", "the Kinesis record has no data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRecord("not_base64", "the Kinesis data is not valid base64") from None
    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadRecord("not_json", "the decoded data is not JSON") from None
    if not isinstance(document, dict):
        raise BadRecord("not_a_ctr", f"the decoded JSON is a {type(document).__name__}, not a CTR object")
    contact_id = document.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise BadRecord("missing_contact_id", "the CTR has no ContactId")
    for name in ("Channel", "InitiationMethod"):
        if not isinstance(document.get(name), str):
            raise BadRecord("missing_field", f"CTR {contact_id} has no {name}", contact_id)
    if not isinstance(document.get("Attributes"), dict):
        raise BadRecord("missing_attributes", f"CTR {contact_id} has no Attributes object", contact_id)
    return cast(ContactTraceRecord, document)


@dataclass(frozen=True)
class SurveyCallback:
    """What one survey call needs. ``chain_id`` (the contact chain) is the idempotency key."""

    chain_id: str
    contact_id: str
    phone_number: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class Decision:
    """``callback`` is set when the customer is to be called; otherwise ``reason`` says why not."""

    reason: str
    callback: SurveyCallback | None = None


def _timestamp(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def decide(
    ctr: ContactTraceRecord,
    *,
    now: dt.datetime,
    arrived_at: dt.datetime,
    max_delay_s: int,
    require_agent: bool,
) -> Decision:
    """Call back, or skip with a reason. Raises :class:`BadRecord` for an opted-in contact that
    cannot be called (no phone number, or not an E.164 one)."""
    attributes = ctr["Attributes"]
    method = ctr["InitiationMethod"].upper()
    if method not in CALLBACK_METHODS:
        # OUTBOUND, API (our own survey calls), CALLBACK, QUEUE_TRANSFER, ...: never called back.
        return Decision(f"initiation_method_{method.lower()}")
    if str(attributes.get(SURVEY_CALL_ATTRIBUTE, "")).strip().lower() == "true":
        return Decision("survey_call")
    if ctr["Channel"].upper() != "VOICE":
        return Decision(f"channel_{ctr['Channel'].lower()}")
    if str(attributes.get(OPT_IN_ATTRIBUTE, "")).strip().lower() != "true":
        return Decision("not_opted_in")
    if ctr.get("NextContactId"):
        # Transferred on: the last contact of the chain (its CTR has no NextContactId) calls back.
        return Decision("continued_in_next_contact")
    agent = ctr.get("Agent")
    if require_agent and not agent:
        return Decision("never_reached_an_agent")
    ended = _timestamp(ctr.get("DisconnectTimestamp")) or arrived_at
    if (now - ended).total_seconds() > max_delay_s:
        return Decision("too_late")

    contact_id = ctr["ContactId"]
    endpoint = ctr.get("CustomerEndpoint") or {}
    phone = endpoint.get("Address") if isinstance(endpoint, dict) else None
    if not phone:
        raise BadRecord(
            "missing_phone_number", f"CTR {contact_id} opted in but has no CustomerEndpoint.Address", contact_id
        )
    if not is_e164(phone):
        raise BadRecord(
            "invalid_phone_number", f"CTR {contact_id} opted in but its customer number is not E.164", contact_id
        )

    call_attributes = {"OriginalContactID": contact_id, SURVEY_CALL_ATTRIBUTE: "True"}
    queue = ctr.get("Queue") or {}
    if isinstance(queue, dict) and queue.get("Name"):
        call_attributes["OriginalQueue"] = str(queue["Name"])
    if isinstance(agent, dict) and agent.get("Username"):
        call_attributes["OriginalAgent"] = str(agent["Username"])
    chain_id = ctr.get("InitialContactId") or contact_id
    return Decision("eligible", SurveyCallback(chain_id, contact_id, phone, call_attributes))
