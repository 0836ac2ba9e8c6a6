"""The entity lease, renewed by the stage task while it waits for its AWS Batch job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def lease_kept_alive(entity: str, owner: str | None, log: Any) -> Iterator[int | None]:
    """Renew this run's entity lease while the task waits for its Batch job (which may sit in the
    queue for longer than the lease lives); the container renews it too once it runs. Yields the
    lease's epoch, which the job gets as ``ETL_LEASE_EPOCH`` (its fencing token must be that one).

    Best effort: if this run does not hold the lease, the container's own check fails the stage,
    naming the holder. A deferred task waits in the triggerer, where nothing renews it.
    """
    from entity_etl.runtime.lease import LeaseKeeper, LeaseLostError, open_lease_store

    with contextlib.ExitStack() as stack:
        epoch = None
        if owner:
            try:
                keeper = stack.enter_context(LeaseKeeper(open_lease_store(), entity, owner, owner_holds_already=True))
                epoch = keeper.epoch
            except (LeaseLostError, OSError, RuntimeError) as exc:
                log.warning("the entity lease is not renewed while the job waits: %s", exc)
        yield epoch
