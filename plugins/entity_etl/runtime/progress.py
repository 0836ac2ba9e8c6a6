"""What a stage says while it runs: its plan, its progress, and the way runtime log lines look.

A stage with a chunk loop makes a :class:`Progress`, says its :meth:`~Progress.plan` once, then calls
:meth:`~Progress.chunk_done` after each chunk. A progress line goes out for every chunk that ends at
least ``every_s`` (10 s) after the last line, and for the last chunk; a chunk that takes longer than
that gets a line of its own, so a stage is never silent for longer than one chunk or 10 s. Every line
goes to the ``entity_etl.runtime.stages`` logger at INFO; Airflow's task log, and ``etlctl``'s stderr
(:func:`configure_logging`), show it. Times in the lines are ISO 8601 UTC.

The cost is one ``time.monotonic()`` call per chunk, plus one log line at most every 10 s or per
chunk (bench/README.md, "Progress logging").
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger("entity_etl.runtime.stages")

#: The most time between two progress lines while chunks finish (a chunk that takes longer gets one).
PROGRESS_EVERY_S = 10.0
#: The environment variable that sets ``etlctl``'s log level (default INFO).
LOG_LEVEL_ENV = "ETL_LOG_LEVEL"


def iso(when: dt.datetime | float) -> str:
    """ISO 8601 in UTC, to the second: ``2026-11-02T08:00:00Z``. A float is a ``time.time()`` epoch."""
    if isinstance(when, float | int):
        when = dt.datetime.fromtimestamp(when, dt.UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class Progress:
    """The plan and progress lines of one stage's chunk loop (``label`` starts every line).

    ``counts_bytes`` False: a stage that moves rows inside the database (no MB or MB/s in its lines).
    """

    def __init__(
        self,
        label: str,
        *,
        counts_bytes: bool = True,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.label, self._clock, self._log = label, clock, logger
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.counts_bytes = counts_bytes
        self._start = self._last = clock()
        self.rows = self.bytes = self.lines = 0
        self.resumed = self.done = self.total = 0

    def plan(self, chunks: int, *, resumed: int = 0, interval: tuple[dt.datetime, dt.datetime] | None = None) -> None:
        """Say the plan: ``chunks`` still to do, ``resumed`` already checkpointed, the source interval."""
        self.resumed, self.done, self.total = resumed, resumed, chunks + resumed
        where = f"; source interval {iso(interval[0])} to {iso(interval[1])}" if interval else ""
        self._log.info(
            "%s: plan: %d chunk(s) to do, %d resumed (done before), %d in all%s",
            self.label,
            chunks,
            resumed,
            self.total,
            where,
        )
        self._start = self._last = self._clock()

    def chunk_done(self, rows: int, nbytes: int, *, total: int | None = None) -> None:
        """One more chunk done, of ``rows`` rows and ``nbytes`` bytes (``total``: a plan that grew)."""
        self.done += 1
        self.rows += rows
        self.bytes += nbytes
        if total is not None:
            self.total = total
        now = self._clock()
        if now - self._last < self.every_s and self.done < self.total:
            return
        self._last = now
        self._line(now)

    def _line(self, now: float) -> None:
        self.lines += 1
        elapsed = max(now - self._start, 1e-9)
        left = max(self.total - self.done, 0)
        eta_s = elapsed / max(self.done - self.resumed, 1) * left  # this run's pace, per chunk
        volume = f"{self.bytes / 1e6:.1f} MB, {self.bytes / 1e6 / elapsed:.1f} MB/s, " if self.counts_bytes else ""
        self._log.info(
            "%s: chunk %d/%d done: %s rows, %s%s rows/s, elapsed %s, ETA %s (in %s)",
            self.label,
            self.done,
            self.total,
            f"{self.rows:,}",
            volume,
            f"{self.rows / elapsed:,.0f}",
            _duration(elapsed),
            iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=eta_s)),
            _duration(eta_s),
        )


class IsoFormatter(logging.Formatter):
    """``2026-11-02T08:00:00.123Z INFO entity_etl.runtime.stages: message``: ISO 8601 UTC times."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line goes out (as ``logging.lastResort`` does)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(level: str | None = None) -> int:
    """``etlctl run-stage``'s logging: ISO-timed lines on stderr, the stages' (``entity_etl.runtime.stages``)
    at ``level``, else ``$ETL_LOG_LEVEL``, else INFO; every other logger's (the metrics' JSON lines,
    botocore's endpoint and credential notes) at WARNING or above, and everything at DEBUG. So a stage
    refused before its plan still says only its one-line error.

    Adds its stderr handler to the root logger once (a second call only sets the levels). Returns the
    level; an unknown level name is a :class:`ValueError` naming the setting.
    """
    name = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").strip().upper()
    number = logging.getLevelName(name)
    if not isinstance(number, int):
        raise ValueError(f"{LOG_LEVEL_ENV}={name!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(IsoFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(number if number <= logging.DEBUG else max(number, logging.WARNING))
    log.setLevel(number)
    return number
