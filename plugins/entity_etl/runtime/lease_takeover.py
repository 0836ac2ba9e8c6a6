"""Taking over an entity lease whose holder is provably gone (``etlctl lease --take-over-dead``).

A killed hand run of ``etlctl run-stage`` keeps its lease until the TTL; its rerun is refused. The
lease may be released early only when its holder is *provably* gone:

* the lease has expired (any holder: nobody may rely on an expired lease), or
* the holder is a hand run on this host (owner ``etlctl:<run_id>@<host>:<pid>``, see
  ``stages.runner``) and no process ``<pid>`` exists here (``os.kill(pid, 0)`` raises
  ``ProcessLookupError``).

A live holder, an Airflow/Batch holder (another owner form) and a hand run on another host are never
taken over. The release is conditional on the row being unchanged since it was read
(:meth:`LeaseStore.release_if_unchanged`), so a holder that renewed in between keeps its lease.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable

from entity_etl.runtime.lease import Lease, LeaseStore

HAND_RUN_OWNER = re.compile(r"^etlctl:(?P<run_id>.*)@(?P<host>[^@:]+):(?P<pid>\d+)$")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def why_gone(
    lease: Lease,
    *,
    now: float | None = None,
    host: str | None = None,
    alive: Callable[[int], bool] = pid_alive,
) -> str | None:
    """Why ``lease``'s holder is provably gone, or ``None`` if it may be alive."""
    now = time.time() if now is None else now
    if lease.expires_at < now:
        return f"the lease expired {int(now - lease.expires_at)}s ago"
    match = HAND_RUN_OWNER.match(lease.owner)
    if match is None:
        return None
    pid, here = int(match["pid"]), host or socket.gethostname()
    if match["host"] == here and pid > 0 and not alive(pid):
        return f"no process {pid} exists on this host ({here})"
    return None


def why_not(lease: Lease, host: str | None = None) -> str:
    """The reason a live-looking holder is not taken over (one line)."""
    match = HAND_RUN_OWNER.match(lease.owner)
    here = host or socket.gethostname()
    if match is None:
        return "its holder is not a hand run of etlctl (an orchestrated run): wait for it or for the expiry"
    if match["host"] != here:
        return f"its holder runs on host {match['host']}, not this one ({here}): run this there, or wait for the expiry"
    return f"process {match['pid']} on this host is alive: stop it first, or wait for the expiry"


def take_over_dead(store: LeaseStore, entity: str) -> tuple[bool, str]:
    """Release ``entity``'s lease if its holder is provably gone: ``(released, one line)``."""
    lease = store.holder(entity)
    if lease is None:
        return True, f"{entity}: the entity lease is free; nothing to take over"
    reason = why_gone(lease)
    if reason is None:
        return False, f"{entity}: refused to take over the lease held by {lease.owner}: {why_not(lease)}"
    if not store.release_if_unchanged(lease):
        return False, f"{entity}: the lease changed while it was checked (renewed or taken); look again"
    return True, f"{entity}: released the lease of {lease.owner} ({reason}); a new run may take it"
