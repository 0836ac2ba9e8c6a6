"""A stage held at a failpoint ``pause`` (entity_etl.runtime.failpoints) while a helper thread acts.

The stage waits (at most 300 s) until its ``<name>.paused`` marker is gone. The marker is removed
whatever the action does, so a failing assertion in the helper thread never leaves the stage paused;
the thread's exception is raised in the test's own thread when the ``with`` block ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


class WhilePaused:
    """``with WhilePaused(marker, action): run_stage(...)``: ``action()`` runs once the stage has paused."""

    def __init__(self, marker: Path, action: Callable[[], None], wait_s: float = 120) -> None:
        self.marker, self.action, self.wait_s = marker, action, wait_s
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"while-{marker.name}", daemon=True)

    def _run(self) -> None:
        try:
            deadline = time.monotonic() + self.wait_s
            while not self.marker.exists():
                if time.monotonic() > deadline:
                    raise AssertionError(f"the stage never paused at {self.marker.name} in {self.wait_s:g}s")
                time.sleep(0.02)
            self.action()
        except BaseException as exc:
            self.error = exc
        finally:
            self.marker.unlink(missing_ok=True)  # the stage goes on, whatever the action did

    def __enter__(self) -> WhilePaused:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._thread.join(timeout=self.wait_s + 60)
        if self._thread.is_alive():
            raise AssertionError(f"the action at {self.marker.name} did not finish")
        if self.error is not None:
            raise self.error  # the helper thread's failure comes first: it is why the stage went wrong
