"""The rating scale and the deployment settings of the daily NPS report.

Settings are read when a task runs, each from the environment variable, else the Airflow Variable of
the same name in lower case (``NPS_REPORT_TABLE`` → ``nps_report_table``; the DAG supplies that
lookup), else the default. Those marked *parse time* shape the DAG itself (its timetable, its sensor,
its callbacks), so they are read when the DAG file is parsed, from the environment alone: parsing
reads no Variable, no DB, no network.

====================== ==================================================== ==============================
setting                meaning                                              default
====================== ==================================================== ==============================
SURVEY_RESPONSES_TABLE the DynamoDB responses table (``SurveyResponses``)   ``SurveyResponses``
SURVEY_TIMEZONE        IANA zone of the survey day: the same value as the   ``UTC``
                       Lambdas' ``SURVEY_TIMEZONE`` (*parse time*)
NPS_START_DATE         first day the schedule covers (*parse time*)         ``2026-01-01``
NPS_SETTLE_MINUTES     wait this long after the day ends before reading it  ``5``
                       (the index is eventually consistent) (*parse time*)
NPS_NOTIFY_TOPIC_ARN   SNS topic of the summary and of failure alerts       ``ETL_NOTIFY_TOPIC_ARN``; with
                       (*parse time*)                                       neither, the task log
NPS_REPORTING_CONN_ID  connection of the reporting database (MySQL/SQLite)  ``survey_reporting``
NPS_REPORT_TABLE       the reporting table (``table`` or ``schema.table``)  ``survey_nps_daily``
NPS_OBJECT_STORE_URL   where the CSV and the chart go: ``s3://bucket/prefix`` ``ETL_OBJECT_STORE_URL``, else
                       or a local folder                                    the runtime's default folder
NPS_OBJECT_PREFIX      key prefix inside that store                         ``survey-nps``
NPS_RATING_MAP         the rating scale, see :meth:`RatingScale.parse`      ``promoter=5;passive=4;``
                                                                            ``detractor=1-3;csat=4-5``
NPS_TREND_DAYS         days drawn in the trend chart, ending at the day     ``90``
====================== ==================================================== ==============================
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from entity_etl.config.identifiers import check_table_name

Lookup = Callable[[str], str | None]

DEFAULT_RATING_MAP = "promoter=5;passive=4;detractor=1-3;csat=4-5"
DEFAULT_RESPONSES_TABLE = "SurveyResponses"
DEFAULT_CONN_ID = "survey_reporting"
DEFAULT_REPORT_TABLE = "survey_nps_daily"
DEFAULT_OBJECT_PREFIX = "survey-nps"
DEFAULT_TREND_DAYS = 90
DEFAULT_START_DATE = dt.date(2026, 1, 1)
_CATEGORIES = {
    "promoter": "promoters",
    "promoters": "promoters",
    "passive": "passives",
    "passives": "passives",
    "detractor": "detractors",
    "detractors": "detractors",
    "csat": "csat",
}
_RATING = re.compile(r"^\s*(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?$")


class NpsSettingError(ValueError):
    """A setting with a bad value; the message names the setting and the fix."""


def _ranges(values: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` → ``1-3,5``."""
    ordered = sorted(values)
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


@dataclass(frozen=True)
class RatingScale:
    """Which ratings are promoters, passives and detractors, and which count as satisfied (CSAT).

    The three categories are disjoint and together are the valid ratings; an answer with any other
    rating is an error. ``csat`` is a subset of the valid ratings (the "top-2-box" by default).
    """

    promoters: frozenset[int]
    passives: frozenset[int]
    detractors: frozenset[int]
    csat: frozenset[int]

    def __post_init__(self) -> None:
        if not self.promoters or not self.detractors:
            raise NpsSettingError("a rating scale needs at least one promoter rating and one detractor rating")
        for a, b in (("promoters", "passives"), ("promoters", "detractors"), ("passives", "detractors")):
            shared = getattr(self, a) & getattr(self, b)
            if shared:
                raise NpsSettingError(f"rating(s) {_ranges(shared)} are both {a} and {b}")
        if not self.csat:
            raise NpsSettingError("csat needs at least one rating")
        if not self.csat <= self.ratings:
            raise NpsSettingError(f"csat rating(s) {_ranges(self.csat - self.ratings)} are not on the scale")

    @property
    def ratings(self) -> frozenset[int]:
        """Every valid rating."""
        return self.promoters | self.passives | self.detractors

    @classmethod
    def parse(cls, text: str, *, setting: str = "NPS_RATING_MAP") -> RatingScale:
        """Parse ``promoter=5;passive=4;detractor=1-3;csat=4-5``.

        ``;``-separated ``category=ratings`` with ``category`` one of ``promoter``, ``passive``,
        ``detractor``, ``csat`` (plurals accepted) and ``ratings`` integers, ranges ``a-b`` or a
        ``,``-list of both. ``passive`` may be empty or left out; ``csat`` left out means the two
        highest valid ratings (top-2-box). A 0-10 scale is ``promoter=9-10;passive=7-8;detractor=0-6``.
        """
        found: dict[str, set[int]] = {}
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            name, sep, values = part.partition("=")
            category = _CATEGORIES.get(name.strip().lower())
            if not sep or category is None:
                raise NpsSettingError(
                    f"{setting}={text!r}: {part!r} is not 'category=ratings' with category one of "
                    f"promoter, passive, detractor, csat (example: {DEFAULT_RATING_MAP})"
                )
            if category in found:
                raise NpsSettingError(f"{setting}={text!r}: {name.strip()} is given twice")
            ratings: set[int] = set()
            for item in (v for v in values.split(",") if v.strip()):
                match = _RATING.fullmatch(item)
                if not match:
                    raise NpsSettingError(
                        f"{setting}={text!r}: {name.strip()}: {item.strip()!r} is not a rating or a-b"
                    )
                low, high = int(match.group(1)), int(match.group(2) or match.group(1))
                if high < low:
                    raise NpsSettingError(f"{setting}={text!r}: {name.strip()}: range {item.strip()!r} is reversed")
                ratings.update(range(low, high + 1))
            found[category] = ratings
        for required in ("promoters", "detractors"):
            if not found.get(required):
                raise NpsSettingError(f"{setting}={text!r}: no {required[:-1]} ratings (example: {DEFAULT_RATING_MAP})")
        valid = found["promoters"] | found.get("passives", set()) | found["detractors"]
        csat = found.get("csat") or set(sorted(valid)[-2:])
        try:
            return cls(
                promoters=frozenset(found["promoters"]),
                passives=frozenset(found.get("passives", set())),
                detractors=frozenset(found["detractors"]),
                csat=frozenset(csat),
            )
        except NpsSettingError as exc:
            raise NpsSettingError(f"{setting}={text!r}: {exc}") from None

    def describe(self) -> str:
        """The canonical text form (what :meth:`parse` reads back), stored with every report row."""
        return (
            f"promoter={_ranges(self.promoters)};passive={_ranges(self.passives)};"
            f"detractor={_ranges(self.detractors)};csat={_ranges(self.csat)}"
        )

    @property
    def span(self) -> str:
        """``1-5``: the lowest and the highest valid rating."""
        return f"{min(self.ratings)}-{max(self.ratings)}"


DEFAULT_SCALE = RatingScale.parse(DEFAULT_RATING_MAP)


def check_timezone(name: str, *, setting: str = "SURVEY_TIMEZONE") -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise NpsSettingError(f"{setting}={name!r} is not an IANA time zone (example: Europe/London)") from None
    return name


def survey_timezone(environ: Mapping[str, str] | None = None) -> str:
    """The zone of the survey day (parse time: the environment only)."""
    env = os.environ if environ is None else environ
    return check_timezone(env.get("SURVEY_TIMEZONE") or "UTC")


def start_date(environ: Mapping[str, str] | None = None) -> dt.date:
    """The first day of the schedule (parse time: the environment only)."""
    env = os.environ if environ is None else environ
    value = env.get("NPS_START_DATE")
    if not value:
        return DEFAULT_START_DATE
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise NpsSettingError(f"NPS_START_DATE={value!r} is not a date (YYYY-MM-DD)") from None


def settle_minutes(environ: Mapping[str, str] | None = None) -> int:
    """Minutes to wait after the day's end before reading it (parse time: the environment only)."""
    env = os.environ if environ is None else environ
    value = env.get("NPS_SETTLE_MINUTES") or "5"
    if not value.isdigit() or int(value) > 24 * 60:
        raise NpsSettingError(f"NPS_SETTLE_MINUTES={value!r}: use a whole number of minutes from 0 to 1440")
    return int(value)


def notify_topic_arn(environ: Mapping[str, str] | None = None) -> str | None:
    """The SNS topic of the NPS DAG's events; ``None``: the notifier's default (``ETL_NOTIFY_TOPIC_ARN``)."""
    env = os.environ if environ is None else environ
    return env.get("NPS_NOTIFY_TOPIC_ARN") or None


def env_lookup(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass(frozen=True)
class NpsSettings:
    """What one run needs, read when it runs (see the module doc for the names and defaults)."""

    responses_table: str = DEFAULT_RESPONSES_TABLE
    reporting_conn_id: str = DEFAULT_CONN_ID
    report_table: str = DEFAULT_REPORT_TABLE
    object_store_url: str = ""
    object_prefix: str = DEFAULT_OBJECT_PREFIX
    scale: RatingScale = DEFAULT_SCALE
    trend_days: int = DEFAULT_TREND_DAYS

    @classmethod
    def from_lookup(cls, lookup: Lookup = env_lookup) -> NpsSettings:
        """Every setting through ``lookup(NAME)`` (``None`` or ``""``: unset, so the default)."""
        from entity_etl.runtime.settings import object_store_url

        def get(name: str) -> str | None:
            value = lookup(name)
            return value.strip() if isinstance(value, str) and value.strip() else None

        table = get("NPS_REPORT_TABLE") or DEFAULT_REPORT_TABLE
        try:
            check_table_name(table)
        except ValueError as exc:
            raise NpsSettingError(f"NPS_REPORT_TABLE: {exc}") from None
        days_text = get("NPS_TREND_DAYS") or str(DEFAULT_TREND_DAYS)
        try:
            trend_days = int(days_text)
        except ValueError:
            trend_days = 0
        if not 2 <= trend_days <= 3660:
            raise NpsSettingError(f"NPS_TREND_DAYS={days_text!r}: use a whole number of days from 2 to 3660")
        return cls(
            responses_table=get("SURVEY_RESPONSES_TABLE") or DEFAULT_RESPONSES_TABLE,
            reporting_conn_id=get("NPS_REPORTING_CONN_ID") or DEFAULT_CONN_ID,
            report_table=table,
            object_store_url=get("NPS_OBJECT_STORE_URL") or object_store_url(),
            object_prefix=(get("NPS_OBJECT_PREFIX") or DEFAULT_OBJECT_PREFIX).strip("/"),
            scale=RatingScale.parse(get("NPS_RATING_MAP") or DEFAULT_RATING_MAP),
            trend_days=trend_days,
        )
