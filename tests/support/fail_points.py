"""In-process fail points for a test: ``with failing_at(monkeypatch, "extract.checkpointed=raise@1"):``
sets ``ETL_FAILPOINTS`` (entity_etl.runtime.failpoints) for the block and clears it after, whatever
the block raised, so a later stage in the same test runs without it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from entity_etl.runtime import failpoints


@contextmanager
def failing_at(monkeypatch: pytest.MonkeyPatch, spec: str) -> Iterator[None]:
    monkeypatch.setenv(failpoints.ENV, spec)
    failpoints.reload()
    try:
        yield
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reload()
