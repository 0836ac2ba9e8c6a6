"""Play the demo's survey traffic through the real Lambda handlers, one day at a time, in time order.

For each day: every CTR goes onto the Kinesis stream and reaches ``process_ctr_stream`` in the batch
of its 5-minute window (the event source mapping's batching), at that window's time; each survey
call Connect would place is answered by the stub; each answer reaches ``update_survey_result`` as the
survey flow invokes it, 6-9 minutes after the agent call. The special cases: a CTR that Kinesis
delivers again, a rating invocation that Connect retries, a key the prompt does not accept.

The handlers' JSON log lines (Powertools, phone numbers masked by the handlers) are kept in a file;
the outcomes printed are the ones the handlers themselves report.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.handler_clock import HandlerClock, clock_in
from demo.survey_aws import CtrStream, ctr_of, expect_survey_call, rating_event
from demo.survey_traffic import DemoContact

WINDOW = dt.timedelta(minutes=5)  # the event source mapping's batching window
ARRIVAL = dt.timedelta(seconds=5)  # from a call's end to its CTR on the stream


@dataclass
class LambdaContext:
    """The part of Lambda's context object the handlers read."""

    aws_request_id: str
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class DayReport:
    """What the handlers reported for one day."""

    day: dt.date
    ctrs: int = 0
    batches: int = 0
    ctr_outcomes: Counter[str] = field(default_factory=Counter)
    redelivery: str = ""
    ratings: Counter[str] = field(default_factory=Counter)
    retry: str = ""
    bad_input: str = ""


class SurveyPlayer:
    """Drives the handlers against the local AWS side; one instance for all days."""

    def __init__(self, stream: CtrStream, stubber: Any, log_path: Path) -> None:
        from lambdas.survey import process_ctr_stream, update_survey_result

        self.process_ctr_stream = process_ctr_stream
        self.update_survey_result = update_survey_result
        self.stream = stream
        self.stubber = stubber
        self.clock = HandlerClock()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("", encoding="utf-8")
        self.invocations = 0
        self.records: dict[str, dict[str, Any]] = {}  # contact id -> its Kinesis event record

    def _invoke(self, handler: Callable[..., dict[str, Any]], event: dict[str, Any]) -> tuple[dict[str, Any], list]:
        """One invocation at the clock's time; returns its answer and its log lines (also kept in the file)."""
        self.invocations += 1
        context = LambdaContext(aws_request_id=f"demo-{self.invocations:05d}")
        out = io.StringIO()
        with redirect_stdout(out), clock_in(self.clock, self.process_ctr_stream, self.update_survey_result):
            answer = handler(event, context)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(out.getvalue())
        return answer, [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]

    def _ctr_batch(self, contacts: Sequence[DemoContact], report: DayReport) -> None:
        event = self.stream.deliver([ctr_of(c) for c in contacts])
        for contact, record in zip(contacts, event["Records"], strict=True):
            self.records[contact.contact_id] = record
            if contact.surveyed:
                expect_survey_call(self.stubber, contact)
        answer, lines = self._invoke(self.process_ctr_stream.handler, event)
        if answer["batchItemFailures"]:
            raise RuntimeError(f"process_ctr_stream failed records: {answer['batchItemFailures']}")
        self.stubber.assert_no_pending_responses()  # every call due was placed, exactly as expected
        report.ctrs += len(contacts)
        report.batches += 1
        for line in lines:
            report.ctr_outcomes.update(line.get("outcomes") or {})

    def _redeliver(self, contact: DemoContact, report: DayReport) -> None:
        # No Connect answer is queued: a second call would fail the record (the stub has none to give).
        answer, lines = self._invoke(self.process_ctr_stream.handler, {"Records": [self.records[contact.contact_id]]})
        outcome = Counter[str]()
        for line in lines:
            outcome.update(line.get("outcomes") or {})
        if answer["batchItemFailures"] or outcome != Counter(duplicate=1):
            raise RuntimeError(f"the redelivered CTR of {contact.contact_id} was not recognised: {answer} {outcome}")
        report.redelivery = f"contact {contact.contact_id}: duplicate, no second call"

    def _rate(self, contact: DemoContact, key: str, report: DayReport, note: str = "") -> None:
        answer, _ = self._invoke(self.update_survey_result.handler, rating_event(contact, key))
        if answer["result"] == "OK":
            outcome = "duplicate" if answer["duplicate"] == "true" else "stored"
        else:
            outcome = answer["error_code"]
        report.ratings[outcome] += 1
        if note == "retry":
            report.retry = (
                f"survey call {contact.survey_contact_id}: result {answer['result']}, duplicate={answer['duplicate']}"
            )
        elif note == "bad":
            report.bad_input = f'key "{key}" -> {answer["result"]} {answer.get("error_code")}: {answer.get("message")}'

    def play_day(self, day: dt.date, contacts: Sequence[DemoContact]) -> DayReport:
        report = DayReport(day)
        timeline: list[tuple[dt.datetime, int, Callable[[], None]]] = []
        windows: dict[dt.datetime, list[DemoContact]] = {}
        for contact in contacts:
            arrival = contact.ended_at + ARRIVAL
            window_end = arrival - (arrival - dt.datetime.combine(day, dt.time(), dt.UTC)) % WINDOW + WINDOW
            windows.setdefault(window_end, []).append(contact)
            if contact.redelivered:
                timeline.append((window_end + dt.timedelta(minutes=2), 1, lambda c=contact: self._redeliver(c, report)))
            if contact.rating is None or contact.rated_at is None:
                continue
            rated_at, key = contact.rated_at, str(contact.rating)
            if contact.bad_input:
                bad = contact.bad_input
                timeline.append(
                    (rated_at - dt.timedelta(seconds=20), 2, lambda c=contact, b=bad: self._rate(c, b, report, "bad"))
                )
            timeline.append((rated_at, 2, lambda c=contact, k=key: self._rate(c, k, report)))
            if contact.retried:
                timeline.append(
                    (rated_at + dt.timedelta(seconds=3), 2, lambda c=contact, k=key: self._rate(c, k, report, "retry"))
                )
        for window_end, batch in windows.items():
            timeline.append((window_end, 0, lambda b=batch: self._ctr_batch(b, report)))
        for moment, _, action in sorted(timeline, key=lambda item: (item[0], item[1])):
            self.clock.set(moment)
            action()
        return report
