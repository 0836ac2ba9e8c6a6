"""Contract tests for the run store and the entity lease: one suite, run against DynamoDB on a real
moto server and against the embedded SQLite implementation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import entity_etl.runtime.lease as lease_module
from entity_etl.runtime.lease import LeaseHeldError, LeaseLostError, LeaseStore
from entity_etl.runtime.run_store import (
    Checkpoint,
    DynamoRunStore,
    RunStore,
    SqliteRunStore,
    StageRecord,
    StaleUpdateError,
)
from support.lease_stores import lease_store

__all__ = ["lease_store"]  # the SQLite / DynamoDB fixture of support/lease_stores.py


class ScanForbidden(AssertionError):
    """The run store called DynamoDB Scan: every read of the run store must be a Query or a GetItem."""


def forbid_scan(params: dict[str, Any], **_: Any) -> None:
    """A ``before-call`` hook: ``params`` is the serialized request, its body the Scan's JSON."""
    table = json.loads(params.get("body") or b"{}").get("TableName")
    raise ScanForbidden(f"DynamoDB Scan of {table!r}: the run store must Query, never Scan")


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def run_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    if request.param == "sqlite":
        yield SqliteRunStore(tmp_path / "state.db")
        return
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb")
    client.create_table(**DynamoRunStore.table_definition("runs"))
    # Every DynamoDB test of the contract below fails if the store ever Scans (botocore calls the
    # hook before it sends the request, so a Scan never reaches moto).
    client.meta.events.register("before-call.dynamodb.Scan", forbid_scan)
    yield DynamoRunStore("runs", client)


def rec(stage: str, status: str, attempt: int = 1, run: str = "r1", entity: str = "de", **kw: object) -> StageRecord:
    return StageRecord(entity=entity, run_id=run, stage=stage, status=status, attempt=attempt, **kw)  # type: ignore[arg-type]


def test_records_after_a_successful_run(run_store: RunStore) -> None:
    run_store.put(rec("_run", "running", started_at="2026-11-01T00:00:00+00:00"))
    for i, stage in enumerate(["cleanup", "extract", "load_staging", "dedupe", "load_target"]):
        start = f"2026-11-01T00:0{i}:00+00:00"
        run_store.put(rec(stage, "running", started_at=start))
        run_store.put(
            rec(
                stage,
                "succeeded",
                started_at=start,
                ended_at=f"2026-11-01T00:0{i}:30+00:00",
                stats={"rows_out": 100 * i},
                batch_job_id=f"job-{i}",
            )
        )
    run_store.put(
        rec("_run", "succeeded", started_at="2026-11-01T00:00:00+00:00", ended_at="2026-11-01T00:05:00+00:00")
    )
    records = run_store.run_records("de", "r1")
    assert [r.stage for r in records] == ["_run", "cleanup", "extract", "load_staging", "dedupe", "load_target"]
    assert all(r.status == "succeeded" for r in records)
    extract = run_store.get("de", "r1", "extract")
    assert extract is not None
    assert (extract.stats, extract.batch_job_id, extract.ended_at) == (
        {"rows_out": 100},
        "job-1",
        "2026-11-01T00:01:30+00:00",
    )


def test_records_after_a_failed_run_and_its_retry(run_store: RunStore) -> None:
    run_store.put(rec("extract", "running"))
    run_store.put(rec("extract", "failed", error="de: extract: source query failed: timeout"))
    failed = run_store.get("de", "r1", "extract")
    assert failed is not None and failed.status == "failed" and "timeout" in failed.error
    run_store.put(rec("extract", "running", attempt=2))
    run_store.put(rec("extract", "succeeded", attempt=2))
    final = run_store.get("de", "r1", "extract")
    assert final is not None and (final.status, final.attempt, final.error) == ("succeeded", 2, "")


def test_replayed_running_after_succeeded_is_rejected(run_store: RunStore) -> None:
    run_store.put(rec("dedupe", "running"))
    run_store.put(rec("dedupe", "succeeded", stats={"duplicates_removed": 5}))
    with pytest.raises(
        StaleUpdateError,
        match=r"de: run 'r1' stage dedupe: rejected running \(attempt 1\); the store already holds succeeded \(attempt 1\)",
    ):
        run_store.put(rec("dedupe", "running"))
    with pytest.raises(StaleUpdateError):
        run_store.put(rec("dedupe", "failed"))  # a late failure of the same attempt
    kept = run_store.get("de", "r1", "dedupe")
    assert kept is not None and kept.status == "succeeded" and kept.stats == {"duplicates_removed": 5}


def test_late_update_of_an_older_attempt_is_rejected(run_store: RunStore) -> None:
    run_store.put(rec("extract", "running", attempt=2))
    with pytest.raises(StaleUpdateError):
        run_store.put(rec("extract", "failed", attempt=1))
    current = run_store.get("de", "r1", "extract")
    assert current is not None and (current.status, current.attempt) == ("running", 2)


def test_query_by_entity_since_and_by_day(run_store: RunStore) -> None:
    run_store.put(rec("extract", "succeeded", run="a", started_at="2026-10-31T23:59:00+00:00"))
    run_store.put(rec("extract", "succeeded", run="b", started_at="2026-11-01T08:00:00+00:00"))
    run_store.put(rec("extract", "succeeded", run="c", entity="jp", started_at="2026-11-01T09:00:00+00:00"))
    run_store.put(rec("extract", "succeeded", run="d", started_at="2026-11-02T00:00:00+00:00"))
    assert [r.run_id for r in run_store.by_entity("de")] == ["a", "b", "d"]
    assert [r.run_id for r in run_store.by_entity("de", since="2026-11-01")] == ["b", "d"]
    assert [(r.entity, r.run_id) for r in run_store.by_day("2026-11-01")] == [("de", "b"), ("jp", "c")]
    assert run_store.by_day("2026-11-03") == []


@pytest.mark.parametrize("run_store", ["dynamodb"], indirect=True)  # SQLite has no Scan
def test_audit_reads_query_and_never_scan(run_store: RunStore) -> None:
    assert isinstance(run_store, DynamoRunStore)
    client = run_store.client
    with pytest.raises(ScanForbidden, match="Scan of 'runs'"):  # the fixture's hook is live on the store's client
        client.scan(TableName=run_store.table_name)
    queried: list[str | None] = []
    client.meta.events.register(  # the Query's own parameters, before botocore serializes them
        "before-parameter-build.dynamodb.Query", lambda params, **_: queried.append(params.get("IndexName"))
    )
    for i, (entity, started) in enumerate(
        [("de", "2026-10-31T23:59:00+00:00"), ("de", "2026-11-01T08:00:00+00:00"), ("jp", "2026-11-01T09:00:00+00:00")]
    ):
        run_store.put(rec("extract", "failed", run=f"r{i}", entity=entity, started_at=started, error="boom"))
    run_store.put_checkpoint(Checkpoint("de", "r1", "extract", "p00", "plan"))

    assert [r.run_id for r in run_store.by_entity("de")] == ["r0", "r1"]
    assert [r.run_id for r in run_store.by_entity("de", since="2026-11-01")] == ["r1"]
    assert [(r.entity, r.run_id) for r in run_store.by_day("2026-11-01")] == [("de", "r1"), ("jp", "r2")]
    assert queried == ["by_entity_started", "by_entity_started", "by_day"]  # one Query each, on the indexes


def test_chunk_checkpoints_per_stage_and_run(run_store: RunStore) -> None:
    def cp(chunk: str, stage: str = "extract", run: str = "r1", **data: object) -> Checkpoint:
        return Checkpoint("de", run, stage, chunk, plan="p1", data=dict(data), written_at="2026-11-01T00:00:00")

    run_store.put(rec("extract", "running", started_at="2026-11-01T00:00:00+00:00"))
    run_store.put_checkpoint(cp("000002", key="part-00002", rows=10))
    run_store.put_checkpoint(cp("000000", key="part-00000", rows=7, upto={"int": 42}))
    run_store.put_checkpoint(cp("000001", key="part-00001", rows=9))
    run_store.put_checkpoint(cp("000001", key="part-00001", rows=8))  # the chunk redone: overwritten
    run_store.put_checkpoint(cp("000000", stage="load_staging", rows=7))
    run_store.put_checkpoint(cp("000000", run="r2", rows=1))

    got = run_store.checkpoints("de", "r1", "extract")
    assert [(c.chunk, c.data["rows"]) for c in got] == [("000000", 7), ("000001", 8), ("000002", 10)]
    assert got[0] == cp("000000", key="part-00000", rows=7, upto={"int": 42})
    assert [c.chunk for c in run_store.checkpoints("de", "r1", "load_staging")] == ["000000"]
    assert run_store.checkpoints("jp", "r1", "extract") == []
    # Checkpoints are not audit records: they never show up in the record queries.
    assert [r.stage for r in run_store.run_records("de", "r1")] == ["extract"]
    assert [r.stage for r in run_store.by_entity("de")] == ["extract"]
    assert [r.stage for r in run_store.by_day("2026-11-01")] == ["extract"]

    assert run_store.clear_checkpoints("de", "r1", "extract") == 3
    assert run_store.checkpoints("de", "r1", "extract") == []
    assert [c.run_id for c in run_store.checkpoints("de", "r2", "extract")] == ["r2"]
    assert len(run_store.checkpoints("de", "r1", "load_staging")) == 1


def test_lease_contention_exactly_one_wins(lease_store: LeaseStore) -> None:
    barrier = threading.Barrier(2, timeout=60)  # a thread that dies breaks it: no endless wait
    results: dict[str, object] = {}

    def contend(owner: str) -> None:
        barrier.wait()
        try:
            results[owner] = lease_store.acquire("de", owner, ttl_s=60)
        except LeaseHeldError as exc:
            results[owner] = exc

    threads = [threading.Thread(target=contend, args=(o,)) for o in ("etl_de/run-A", "etl_de/run-B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o, r in results.items() if not isinstance(r, LeaseHeldError)]
    losers = [r for r in results.values() if isinstance(r, LeaseHeldError)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].holder.owner == winners[0]
    assert f"de: the entity lease is held by {winners[0]} (expires in" in str(losers[0])


class Clock:
    """The lease module's clock, moved on by the test rather than waited for (on a loaded machine a
    sub-second TTL can run out between two calls)."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


def test_expired_lease_is_taken_over(lease_store: LeaseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(lease_module, "time", clock)
    lease_store.acquire("de", "dead-worker", ttl_s=0.5)
    with pytest.raises(LeaseHeldError):
        lease_store.acquire("de", "new-run", ttl_s=60)
    clock.now += 0.4
    with pytest.raises(LeaseHeldError):  # still within its TTL
        lease_store.acquire("de", "new-run", ttl_s=60)
    clock.now += 0.2
    lease = lease_store.acquire("de", "new-run", ttl_s=60)
    assert lease.owner == "new-run"
    holder = lease_store.holder("de")
    assert holder is not None and holder.owner == "new-run"
    with pytest.raises(LeaseLostError):
        lease_store.renew("de", "dead-worker", ttl_s=60)
    assert lease_store.release("de", "dead-worker") is False  # the old holder cannot free the new lease
    assert lease_store.holder("de") is not None


def test_renew_release_and_reacquire(lease_store: LeaseStore) -> None:
    first = lease_store.acquire("de", "me", ttl_s=10)
    renewed = lease_store.renew("de", "me", ttl_s=100)
    assert renewed.expires_at > first.expires_at + 50
    assert lease_store.acquire("de", "me", ttl_s=10).owner == "me"  # re-entrant for the same owner
    assert lease_store.acquire("jp", "other", ttl_s=10).owner == "other"  # other entities are independent
    assert lease_store.release("de", "me") is True
    assert lease_store.holder("de") is None
    assert lease_store.acquire("de", "other", ttl_s=10).owner == "other"
