"""Named fail points, for the fault-injection tests and benchmark.

The stages call :func:`hit` at the moments that matter for resume (a part uploaded, a chunk committed,
a checkpoint written). Unless ``ETL_FAILPOINTS`` is set, a hit is one dict lookup.

``ETL_FAILPOINTS`` is a comma-separated list of ``name=action`` or ``name=action@n`` (on the n-th hit
of that name in this process, default the first):

* ``kill``  -- SIGKILL this process: no cleanup, no ``finally``, as when a container is killed;
* ``pause`` -- create ``$ETL_FAILPOINT_DIR/<name>.paused`` and wait (at most 300 s) until the test
  deletes it, e.g. while it restarts the database;
* ``raise`` -- raise :class:`InjectedFault`.

Hand-written because it is a few lines and no maintained Python failpoint library exists (the
pattern is FreeBSD's fail(9) / Rust's ``fail`` crate).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

ENV = "ETL_FAILPOINTS"
DIR_ENV = "ETL_FAILPOINT_DIR"
ACTIONS = ("kill", "pause", "raise")


class InjectedFault(RuntimeError):
    """Raised by a ``raise`` fail point."""


def _parse(spec: str) -> dict[str, tuple[str, int]]:
    points: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, rest = item.partition("=")
        action, _, nth = rest.partition("@")
        if not sep or action not in ACTIONS or (nth and not nth.isdigit()):
            raise ValueError(f"{ENV}: bad entry {item!r}; use name=kill|pause|raise[@n]")
        points[name.strip()] = (action, int(nth or 1))
    return points


_points = _parse(os.environ.get(ENV, ""))
_hits: Counter[str] = Counter()


def reload() -> None:
    """Re-read ``ETL_FAILPOINTS`` (for in-process tests)."""
    global _points
    _points = _parse(os.environ.get(ENV, ""))
    _hits.clear()


def hit(name: str) -> None:
    if not _points or name not in _points:
        return
    action, nth = _points[name]
    _hits[name] += 1
    if _hits[name] != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise InjectedFault(f"fail point {name} (hit {nth})")
    else:
        marker = Path(os.environ.get(DIR_ENV, ".")) / f"{name}.paused"
        marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + 300
        while marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
