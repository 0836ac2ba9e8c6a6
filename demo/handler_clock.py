"""A settable clock for the survey handlers, so that the demo can replay past days through them.

The handlers read the time with ``dt.datetime.now(dt.UTC)``: ``process_ctr_stream`` to decide whether a
call ended recently enough to be called back, ``update_survey_result`` for ``SurveyDate`` and
``RespondedAt``. A demo day in the past needs them to see that day's time. Rather than add a test
hook to the Lambda code, the demo swaps the ``dt`` name inside those two modules for a copy of the
``datetime`` module whose ``datetime.now`` reads this clock, and puts the real one back afterwards.
Everything else (Powertools' idempotency expiry, boto3 request signing) keeps the real time.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class HandlerClock:
    """The time the handlers see; :meth:`set` moves it."""

    def __init__(self) -> None:
        self.current = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    def set(self, moment: dt.datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("the handlers' clock takes an aware datetime")
        self.current = moment

    def module(self) -> types.ModuleType:
        """A stand-in for the ``datetime`` module: the same names, ``datetime.now`` from this clock."""
        clock = self

        class ClockDatetime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> ClockDatetime:
                moment = clock.current.astimezone(tz) if tz else clock.current.astimezone().replace(tzinfo=None)
                return cls.combine(moment.date(), moment.timetz())

        stand_in = types.ModuleType("datetime")
        stand_in.__dict__.update({k: v for k, v in vars(dt).items() if not k.startswith("__")})
        stand_in.datetime = ClockDatetime  # type: ignore[attr-defined]
        return stand_in


@contextmanager
def clock_in(clock: HandlerClock, *modules: Any) -> Iterator[None]:
    """Within the block, ``modules`` (each imported as ``import datetime as dt``) read ``clock``."""
    originals = [module.dt for module in modules]
    stand_in = clock.module()
    for module in modules:
        module.dt = stand_in
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.dt = original
