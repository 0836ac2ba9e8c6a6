"""The demo's survey traffic: who called on which day, who opted in, and what they rated.

Pure data, seeded, no AWS: ``survey_handlers`` plays it through the real Lambda handlers, and
``tests/test_demo.py`` computes the expected daily figures from it on its own, so the demo's output
is checked against the ratings that went in, not against numbers copied from an earlier run.

Phone numbers are from Ofcom's range reserved for drama (+44 7700 900000-900999): never a real line.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, replace

DEMO_DAYS = (dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
CONTACTS_PER_DAY = 36
SEED = "survey-demo-3"
QUEUES = ("Sales", "Support", "Billing")
AGENTS = ("alice", "bruno", "chen", "dara")
# How the day's customers feel, as weights of the ratings 1..5: a dip on the second day, a better third.
MOODS = ((1, 1, 2, 5, 6), (3, 2, 3, 4, 3), (1, 1, 1, 4, 8))
BAD_INPUT = "7"  # a key the survey's "1 to 5" prompt does not accept
_IDS = uuid.UUID("6f1c2a9e-0d4b-4e8f-9a37-5b2c1d0e8f71")  # namespace of the demo's survey-call ids


@dataclass(frozen=True)
class DemoContact:
    """One agent call (its CTR) and, when the customer was surveyed and answered, the rating."""

    day: dt.date
    contact_id: str
    phone: str
    queue: str
    agent: str | None  # None: hung up in the queue, never reached an agent (not surveyed)
    opted_in: bool
    ended_at: dt.datetime
    rating: int | None  # the rating that is stored; None: not surveyed, or hung up on the survey
    rated_at: dt.datetime | None
    bad_input: str | None = None  # pressed first, rejected by the handler, then re-prompted
    redelivered: bool = False  # its CTR reaches the handler a second time
    retried: bool = False  # Connect invokes the rating handler a second time with the same event

    @property
    def surveyed(self) -> bool:
        """What ``process_ctr_stream`` calls back: opted in and reached an agent."""
        return self.opted_in and self.agent is not None

    @property
    def survey_contact_id(self) -> str:
        """The id Connect gives the outbound survey call (the demo's stub answers with it)."""
        return str(uuid.uuid5(_IDS, self.contact_id))


def _contacts(day: dt.date, mood: tuple[int, ...], rng: random.Random) -> list[DemoContact]:
    opening = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC)
    # Calls end between 08:00 and 18:00; ratings come 6-9 minutes later (the survey call), same day.
    ends = sorted(opening + dt.timedelta(seconds=rng.randrange(10 * 3600)) for _ in range(CONTACTS_PER_DAY))
    contacts = []
    for ended in ends:
        agent = rng.choice(AGENTS) if rng.random() > 0.08 else None
        opted_in = rng.random() < 0.85
        answers = agent is not None and opted_in and rng.random() < 0.9
        contacts.append(
            DemoContact(
                day=day,
                contact_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                phone=f"+447700900{rng.randrange(1000):03d}",
                queue=rng.choices(QUEUES, weights=(3, 4, 2))[0],
                agent=agent,
                opted_in=opted_in,
                ended_at=ended,
                rating=rng.choices(range(1, 6), weights=mood)[0] if answers else None,
                rated_at=ended + dt.timedelta(seconds=360 + rng.randrange(180)) if answers else None,
            )
        )
    return contacts


def _mark_first(contacts: list[DemoContact], **flag: bool | str) -> list[DemoContact]:
    """Give the day's first rated contact one of the demo's special cases."""
    first = next(i for i, c in enumerate(contacts) if c.rating is not None)
    marked = list(contacts)
    marked[first] = replace(marked[first], **flag)  # type: ignore[arg-type]
    return marked


def plan_traffic() -> dict[dt.date, list[DemoContact]]:
    """Every demo day's contacts in the order their calls ended (the same on every run)."""
    rng = random.Random(SEED)
    plan = {day: _contacts(day, mood, rng) for day, mood in zip(DEMO_DAYS, MOODS, strict=True)}
    # One of each special case, a day apart: a CTR Kinesis redelivers, a rating Connect retries, a bad key.
    first, second, third = DEMO_DAYS
    plan[first] = _mark_first(plan[first], redelivered=True)
    plan[second] = _mark_first(plan[second], retried=True)
    plan[third] = _mark_first(plan[third], bad_input=BAD_INPUT)
    return plan
