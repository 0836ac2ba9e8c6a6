"""Truly concurrent lease acquirers: separate processes released together at a barrier, round after
round, on SQLite and on DynamoDB (the moto server of tests/support/servers.py).

Threads of one process (tests/test_state_stores.py) barely overlap under the GIL; processes do. In
each round every process tries to take the same entity's lease at once: exactly one wins and every
other one gets :class:`LeaseHeldError` naming the winner, never another error. Half the rounds start
from an expired lease of a dead holder, so the take-over condition is raced too.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.runtime.lease import DynamoLeaseStore, LeaseHeldError, LeaseStore, SqliteLeaseStore

PROCESSES = 4
ROUNDS = 40
TABLE = "leases"


def open_store(kind: str, where: str) -> LeaseStore:
    return SqliteLeaseStore(Path(where)) if kind == "sqlite" else DynamoLeaseStore(where)


def contend(kind: str, where: str, owner: str, barrier: Any, results: Any) -> None:
    """One acquirer process: in each round, wait at the barrier, then try to take ``entity-<round>``."""
    store = open_store(kind, where)
    store.holder("warm-up")  # the client and its connection are ready before the first round
    outcomes = []
    for r in range(ROUNDS):
        barrier.wait(timeout=120)
        started = time.time()
        try:
            store.acquire(f"entity-{r}", owner, ttl_s=600)
            outcome = ("won", owner)
        except LeaseHeldError as exc:
            outcome = ("held", exc.holder.owner)
        except Exception as exc:
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        outcomes.append((r, started, *outcome))
    results.put((owner, outcomes))


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        path = tmp_path / "leases.db"
        SqliteLeaseStore(path)  # the table exists before the processes start
        yield "sqlite", str(path)
        return
    request.getfixturevalue("aws")  # AWS_ENDPOINT_URL and the fake credentials, inherited by the processes
    boto3.client("dynamodb").create_table(**DynamoLeaseStore.table_definition(TABLE))
    yield "dynamodb", TABLE


def test_concurrent_processes_exactly_one_wins_each_round(store: tuple[str, str]) -> None:
    kind, where = store
    lease_store = open_store(kind, where)
    for r in range(1, ROUNDS, 2):  # odd rounds: a dead holder's lease, expired by the time they start
        lease_store.acquire(f"entity-{r}", "dead-holder", ttl_s=0.01)
    time.sleep(0.05)

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    owners = [f"etl_de/run-{i}" for i in range(PROCESSES)]
    procs = [ctx.Process(target=contend, args=(kind, where, o, barrier, results)) for o in owners]
    for p in procs:
        p.start()
    by_owner = dict(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    spreads = []
    for r in range(ROUNDS):
        outcomes = {owner: by_owner[owner][r] for owner in owners}
        errors = [o for o in outcomes.values() if o[2] == "error"]
        assert not errors, f"round {r}: {errors}"
        winners = [owner for owner, o in outcomes.items() if o[2] == "won"]
        assert len(winners) == 1, f"round {r}: {winners} all took the lease"
        (winner,) = winners
        assert all(o[3] == winner for o in outcomes.values()), f"round {r}: {outcomes}"
        holder = lease_store.holder(f"entity-{r}")
        assert holder is not None and holder.owner == winner
        starts = [o[1] for o in outcomes.values()]
        spreads.append(max(starts) - min(starts))
    # The processes did start together: in most rounds all of them tried within a few milliseconds.
    spreads.sort()
    assert spreads[len(spreads) // 2] < 0.05, spreads
    print(f"{kind}: median start spread {spreads[len(spreads) // 2] * 1000:.2f} ms over {ROUNDS} rounds")
