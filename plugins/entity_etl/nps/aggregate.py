"""One day's survey answers → counts, NPS and CSAT, overall and per queue and per agent.

Streaming: :class:`DayAggregator` takes the answers one at a time and keeps only counters, five
integers per queue and per agent seen, so its memory grows with the number of distinct queues and
agents, never with the number of answers. ``bench/nps_aggregate.py`` measures 1M answers.

* NPS = % promoters - % detractors, from -100 to 100; ``None`` for a day (or a queue, an agent)
  without answers.
* CSAT = % of answers whose rating is in the scale's ``csat`` set (top-2-box, 4-5, by default);
  ``None`` without answers.

Both are rounded half away from zero to two decimals (``Decimal``), so a figure is the same wherever
it is computed. Answers without a queue (or an agent) count in the overall figures only.

**NPS on a 1-5 scale is not the 0-10 Net Promoter Score.** The classic NPS asks "how likely are you to
recommend ..." on 0-10 and counts 9-10 as promoters and 0-6 as detractors; this survey asks a 1-5
satisfaction rating and counts 5 as promoter and 1-3 as detractors. The arithmetic is the same, the
figures are not: do not compare them with published 0-10 NPS benchmarks, only with themselves over time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from entity_etl.nps.settings import DEFAULT_SCALE, RatingScale

OVERALL = "overall"
QUEUE = "queue"
AGENT = "agent"
DIMENSIONS = (OVERALL, QUEUE, AGENT)
_CENT = Decimal("0.01")
# Counter slots: answers, promoters, passives, detractors, satisfied (csat).
_N, _PROMOTERS, _PASSIVES, _DETRACTORS, _SATISFIED = range(5)


class InvalidResponseError(ValueError):
    """An answer that cannot be counted; the message names the day and the answer's contact id."""


def percent(part: int, whole: int) -> Decimal | None:
    """``100 * part / whole`` rounded half away from zero to 0.01; ``None`` when ``whole`` is 0."""
    if whole == 0:
        return None
    return (Decimal(100 * part) / Decimal(whole)).quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Counts:
    """The counts of one group of answers (a day, one queue's or one agent's answers of a day)."""

    responses: int = 0
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    satisfied: int = 0

    @property
    def nps(self) -> Decimal | None:
        """% promoters - % detractors (-100 … 100), rounded to 0.01; ``None`` without answers."""
        return percent(self.promoters - self.detractors, self.responses)

    @property
    def csat_pct(self) -> Decimal | None:
        """% satisfied (the scale's csat ratings), rounded to 0.01; ``None`` without answers."""
        return percent(self.satisfied, self.responses)

    @classmethod
    def of(cls, counters: list[int]) -> Counts:
        return cls(*counters)


@dataclass(frozen=True)
class FigureRow:
    """One row of a day's figures: ``dimension`` is overall, queue or agent; ``key`` the queue or agent."""

    day: dt.date
    dimension: str
    key: str
    counts: Counts

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "report_date": self.day.isoformat(),
            "dimension": self.dimension,
            "dimension_key": self.key,
            "responses": c.responses,
            "promoters": c.promoters,
            "passives": c.passives,
            "detractors": c.detractors,
            "satisfied": c.satisfied,
            "nps": c.nps,
            "csat_pct": c.csat_pct,
        }


@dataclass(frozen=True)
class DayFigures:
    day: dt.date
    scale: RatingScale
    overall: Counts
    queues: Mapping[str, Counts] = field(default_factory=dict)
    agents: Mapping[str, Counts] = field(default_factory=dict)

    def rows(self) -> list[FigureRow]:
        """The overall row, then the queues, then the agents, each by name: always the same order."""
        rows = [FigureRow(self.day, OVERALL, "", self.overall)]
        rows += [FigureRow(self.day, QUEUE, k, self.queues[k]) for k in sorted(self.queues)]
        rows += [FigureRow(self.day, AGENT, k, self.agents[k]) for k in sorted(self.agents)]
        return rows


class DayAggregator:
    """Counters for one day. ``add`` each answer (a ``SurveyResponse`` mapping), then ``figures()``.

    An answer must carry ``rating`` (an integer on the scale) and may carry ``queue``, ``agent`` and
    ``survey_date`` (checked against the day when present) and ``contact_id`` (named in errors).
    """

    def __init__(self, *, day: dt.date, scale: RatingScale = DEFAULT_SCALE) -> None:
        self.day = day
        self.scale = scale
        self._day_text = day.isoformat()
        # rating -> (category slot, 1 if satisfied else 0)
        self._slots: dict[int, tuple[int, int]] = {}
        for slot, ratings in (
            (_PROMOTERS, scale.promoters),
            (_PASSIVES, scale.passives),
            (_DETRACTORS, scale.detractors),
        ):
            for rating in ratings:
                self._slots[rating] = (slot, 1 if rating in scale.csat else 0)
        self._overall = [0, 0, 0, 0, 0]
        self._queues: dict[str, list[int]] = {}
        self._agents: dict[str, list[int]] = {}

    def _reject(self, response: Mapping[str, Any], problem: str) -> InvalidResponseError:
        return InvalidResponseError(
            f"{self._day_text}: answer contact_id={response.get('contact_id')!r}: {problem} "
            f"(scale {self.scale.describe()})"
        )

    def add(self, response: Mapping[str, Any]) -> None:
        rating = response.get("rating")
        found = self._slots.get(rating) if type(rating) is int else None  # an int: not a bool, not "5"
        if found is None:
            raise self._reject(response, f"rating {rating!r} is not on the scale {self.scale.span}")
        survey_date = response.get("survey_date")
        if survey_date is not None and survey_date != self._day_text:
            raise self._reject(response, f"belongs to the day {survey_date!r}, not {self._day_text}")
        slot, satisfied = found
        counters = self._overall
        counters[_N] += 1
        counters[slot] += 1
        counters[_SATISFIED] += satisfied
        for groups, name in ((self._queues, response.get("queue")), (self._agents, response.get("agent"))):
            if name:
                counters = groups.get(name) or groups.setdefault(name, [0, 0, 0, 0, 0])
                counters[_N] += 1
                counters[slot] += 1
                counters[_SATISFIED] += satisfied

    def add_all(self, responses: Iterable[Mapping[str, Any]]) -> DayAggregator:
        for response in responses:
            self.add(response)
        return self

    def figures(self) -> DayFigures:
        return DayFigures(
            day=self.day,
            scale=self.scale,
            overall=Counts.of(self._overall),
            queues={k: Counts.of(v) for k, v in self._queues.items()},
            agents={k: Counts.of(v) for k, v in self._agents.items()},
        )


def aggregate_day(
    responses: Iterable[Mapping[str, Any]], *, day: dt.date, scale: RatingScale = DEFAULT_SCALE
) -> DayFigures:
    """The figures of ``day`` from its answers (any iterable: a list, a generator, a paginated read)."""
    return DayAggregator(day=day, scale=scale).add_all(responses).figures()
