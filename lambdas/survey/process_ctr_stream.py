"""ProcessCCPEventStream: contact trace records on Kinesis -> an outbound survey call.

For each Kinesis record: decode the CTR (base64, then JSON), decide (``ctr.decide``), and when the
caller opted in, call them back on the survey flow (``outbound_call``), at most once per contact
chain. Returns a partial batch response: only the records that failed are reported, so Lambda
checkpoints past the others and retries from the first failure (the event source mapping bounds the
retries and hands what still fails to its on-failure destination).

What fails is transient only (Connect throttling or errors, the marker table): a record that can
never succeed (``ctr.BadRecord``: not base64, not JSON, no contact id, no valid phone number) is
logged and sent to the dead-letter queue ``CTR_DLQ_URL`` (``dead_letters``), so it never holds its
shard back; only if that send fails is it reported as failed (retried, never lost).

Once per contact chain: AWS Lambda Powertools idempotency, with a marker item per chain in
``CALLBACK_MARKER_TABLE``. The marker is written IN_PROGRESS (conditionally: only if there is none,
it expired, or an earlier attempt's IN_PROGRESS lease ran out) before the call, and COMPLETED with
the survey contact id after it, kept for ``CALLBACK_MARKER_TTL_S``. A redelivered CTR finds the
COMPLETED marker and places no call. If the call fails, the marker is deleted and the record fails,
so the retry calls the customer. If the function dies mid-call, the IN_PROGRESS lease ends with the
invocation's deadline and the retry proceeds, with the same Connect ``ClientToken``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from botocore.exceptions import BotoCoreError, ClientError

from . import clients, dead_letters
from .ctr import BadRecord, SurveyCallback, decide, decode_ctr
from .logs import logger
from .outbound_call import start_survey_call
from .phone import mask_phone
from .settings import CallbackSettings

MARKER_KEY_PREFIX = "survey-callback"  # marker id: survey-callback#<sha256 of the JSON chain id>


class RecordFailed(Exception):
    """What a failed record raises to the batch processor: codes and ids only.

    Powertools keeps (and logs at DEBUG, through its own unmasked logger) the exception of a failed
    record. A Connect or DynamoDB error's message may quote request values, the dialled number among
    them, so the original is logged here (masked) and replaced by this one.
    """


def _replayed(response: Any, idempotent_data: DataRecord) -> Any:
    """Powertools' hook for an answer served from a COMPLETED marker: flag it as a duplicate."""
    return {**response, "replayed": True} if isinstance(response, dict) else response


class SurveyCaller:
    """The idempotent call, bound to one configuration (kept per container)."""

    def __init__(self, settings: CallbackSettings) -> None:
        self.settings = settings
        self.config = IdempotencyConfig(
            event_key_jmespath="chain_id",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.marker_ttl_s,
            hash_function="sha256",
            response_hook=_replayed,
        )
        self.store = DynamoDBPersistenceLayer(table_name=settings.marker_table, boto3_client=clients.dynamodb())
        self.call = idempotent_function(
            data_keyword_argument="request",
            config=self.config,
            persistence_store=self.store,
            key_prefix=MARKER_KEY_PREFIX,
        )(self._place_call)
        self.time_left_s: Callable[[], float] | None = None
        self.placed: set[str] = set()  # chains called in this invocation

    def _place_call(self, request: dict[str, Any]) -> dict[str, Any]:
        callback = SurveyCallback(**request)
        survey_contact_id, attempts = start_survey_call(callback, self.settings, time_left_s=self.time_left_s)
        self.placed.add(callback.chain_id)
        return {
            "survey_contact_id": survey_contact_id,
            "attempts": attempts,
            "called_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }


_callers: dict[CallbackSettings, SurveyCaller] = {}


def reset_caches() -> None:
    """Forget clients and idempotency stores (a new container, as far as this module knows)."""
    _callers.clear()
    clients.reset()


def _caller(settings: CallbackSettings) -> SurveyCaller:
    if settings not in _callers:
        _callers.clear()
        _callers[settings] = SurveyCaller(settings)
    return _callers[settings]


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def _dead_letter(record: KinesisStreamRecord, exc: BadRecord, where: dict[str, Any], queue_url: str) -> str:
    """A record that can never succeed: logged, sent to the dead-letter queue, and done with. When the
    queue cannot take it, the record fails (and is retried) instead of being lost."""
    sequence_number = where["sequence_number"]
    if exc.contact_id:
        where["contact_id"] = exc.contact_id
    logger.error(
        f"CTR record at sequence number {sequence_number} rejected ({exc.code}): {exc.detail}",
        extra={**where, "reason": exc.code},
    )
    try:
        message_id = dead_letters.send(queue_url, record.raw_event, exc)
    except (ClientError, BotoCoreError) as error:
        code = _error_code(error)
        logger.error(
            f"CTR record at sequence number {sequence_number} could NOT be sent to the dead-letter queue "
            f"({code}); the record will be retried",
            extra={**where, "reason": exc.code, "error_code": code},
        )
        raise RecordFailed(f"record {sequence_number}: {exc.code}, dead-letter queue failed ({code})") from None
    logger.info(
        f"CTR record at sequence number {sequence_number} sent to the dead-letter queue",
        extra={**where, "reason": exc.code, "dead_letter_message_id": message_id},
    )
    return "dead_lettered"


def handle_record(record: KinesisStreamRecord, caller: SurveyCaller) -> str:
    """Process one Kinesis record; return the outcome, or raise to report the record as failed."""
    payload = record.raw_event.get("kinesis") or {}
    sequence_number = str(payload.get("sequenceNumber") or "?")
    where: dict[str, Any] = {"sequence_number": sequence_number, "partition_key": payload.get("partitionKey")}
    now = dt.datetime.now(dt.UTC)
    arrival = payload.get("approximateArrivalTimestamp")
    arrived_at = dt.datetime.fromtimestamp(float(arrival), dt.UTC) if isinstance(arrival, int | float) else now
    try:
        ctr = decode_ctr(payload.get("data"))
        where["contact_id"] = ctr["ContactId"]
        decision = decide(
            ctr,
            now=now,
            arrived_at=arrived_at,
            max_delay_s=caller.settings.max_callback_delay_s,
            require_agent=caller.settings.require_agent,
        )
    except BadRecord as exc:
        return _dead_letter(record, exc, where, caller.settings.dead_letter_queue_url)
    callback = decision.callback
    if callback is None:
        logger.info(
            f"no survey call for contact {ctr['ContactId']}: {decision.reason}",
            extra={**where, "reason": decision.reason},
        )
        return decision.reason
    where.update(phone=mask_phone(callback.phone_number), chain_id=callback.chain_id)
    return _call(callback, caller, where)


def _call(callback: SurveyCallback, caller: SurveyCaller, where: dict[str, Any]) -> str:
    """The idempotent survey call for one record; raises :class:`RecordFailed` for a retry."""
    sequence_number = where["sequence_number"]
    try:
        result = caller.call(request=dataclasses.asdict(callback))
    except IdempotencyAlreadyInProgressError:
        logger.warning(
            f"survey call for contact {callback.contact_id} is in progress in another invocation; "
            f"record {sequence_number} will be retried",
            extra={**where, "reason": "in_progress"},
        )
        raise RecordFailed(f"record {sequence_number}: in_progress") from None
    except IdempotencyPersistenceLayerError as exc:
        if callback.chain_id in caller.placed:
            # The customer was called; only the COMPLETED write failed. Not failing the record avoids a
            # retry (which the ClientToken would only partly cover).
            logger.warning(
                f"survey call for contact {callback.contact_id} placed, but its marker could not be completed",
                extra={**where, "error_code": _error_code(exc.__cause__ or exc)},
            )
            return "called"
        logger.error(
            f"survey call for contact {callback.contact_id} (record {sequence_number}) not placed: "
            f"the marker table failed ({_error_code(exc.__cause__ or exc)}); the record will be retried",
            extra={**where, "error_code": _error_code(exc.__cause__ or exc)},
        )
        raise RecordFailed(f"record {sequence_number}: marker table failed") from None
    except Exception as exc:
        code = _error_code(exc)
        logger.error(
            f"survey call for contact {callback.contact_id} (record {sequence_number}) FAILED "
            f"({code}); the record will be retried",
            extra={**where, "error_code": code},
            # A traceback for what is not an AWS error answer (a bug, a network failure); masked like every line.
            exc_info=not isinstance(exc, ClientError),
        )
        raise RecordFailed(f"record {sequence_number}: {code}") from None
    if result.get("replayed"):
        logger.info(
            f"contact {callback.contact_id} was already called back (survey contact {result.get('survey_contact_id')}); "
            "duplicate delivery ignored",
            extra={**where, "reason": "duplicate", "survey_contact_id": result.get("survey_contact_id")},
        )
        return "duplicate"
    logger.info(
        f"survey call started for contact {callback.contact_id}",
        extra={**where, "survey_contact_id": result["survey_contact_id"], "attempts": result["attempts"]},
    )
    return "called"


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Kinesis-triggered entry point; returns ``{"batchItemFailures": [{"itemIdentifier": seq}, ...]}``."""
    logger.append_keys(request_id=getattr(context, "aws_request_id", None))
    settings = CallbackSettings.from_env()  # a ConfigurationError fails the invocation: nothing is lost
    caller = _caller(settings)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        caller.config.register_lambda_context(context)
        caller.time_left_s = lambda: remaining() / 1000.0
    else:
        caller.time_left_s = None
    caller.placed.clear()

    processor = BatchProcessor(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
    records = event.get("Records") or []
    with processor(records, lambda record: handle_record(record, caller)):
        results = processor.process()
    response: dict[str, Any] = dict(processor.response())
    outcomes = Counter(str(result) if status == "success" else "failed" for status, result, _ in results)
    logger.info(
        f"processed {len(records)} CTR record(s)",
        extra={"records": len(records), "outcomes": dict(outcomes), "failed": len(response["batchItemFailures"])},
    )
    return response
