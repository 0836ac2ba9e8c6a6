"""runtime/lease.py piece by piece: the values a lease carries, the epoch rule, the store switch, the TTL
bounds and the half-TTL rule on a clock the test moves. The contract of both stores under contention is in
test_state_stores.py and test_lease_concurrency.py; these close the gaps mutation testing found there."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

import entity_etl.runtime.lease as lease_module
from entity_etl.runtime.lease import (
    DynamoLeaseStore,
    Lease,
    LeaseHeldError,
    LeaseKeeper,
    LeaseLostError,
    LeaseStore,
    SqliteLeaseStore,
    checked_ttl_s,
    default_ttl_s,
    next_epoch,
    open_lease_store,
)
from support.lease_stores import lease_store

__all__ = ["lease_store"]  # the SQLite / DynamoDB fixture of support/lease_stores.py


class Clock:
    """The lease module's ``time``: wall clock and monotonic clock both moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()
        self.mono = 1_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(lease_module, "time", clock)
    return clock


def test_describe_names_the_owner_and_the_whole_seconds_left(clock: Clock) -> None:
    assert Lease("de", "run-A", clock.now + 30.9, clock.now).describe() == "run-A (expires in 30s)"
    assert Lease("de", "run-A", clock.now - 5, clock.now).describe() == "run-A (expires in 0s)"


def test_next_epoch_is_above_the_previous_and_the_clock_in_ms() -> None:
    assert next_epoch(0, 1.5) == 1_500
    assert next_epoch(1_499, 1.5) == 1_500
    assert next_epoch(1_500, 1.5) == 1_501  # never the previous one again, even within one millisecond
    assert next_epoch(10**15, 1.5) == 10**15 + 1


def test_a_lease_carries_its_owner_expiry_start_and_epoch_through_every_call(
    lease_store: LeaseStore, clock: Clock
) -> None:
    started = clock.now
    first = lease_store.acquire("de", "me", ttl_s=10)
    assert (first.entity, first.owner, first.expires_at, first.acquired_at) == ("de", "me", started + 10, started)
    clock.now += 3
    again = lease_store.acquire("de", "me", ttl_s=20)  # re-acquired by its owner: start and epoch kept
    assert (again.expires_at, again.acquired_at, again.epoch) == (clock.now + 20, started, first.epoch)
    clock.now += 3
    renewed = lease_store.renew("de", "me", ttl_s=30)
    assert renewed == Lease("de", "me", clock.now + 30, started, first.epoch)
    assert lease_store.holder("de") == renewed
    clock.now += 100  # expired
    other = lease_store.acquire("de", "other", ttl_s=10)
    assert (other.acquired_at, other.expires_at) == (clock.now, clock.now + 10)
    assert other.epoch == next_epoch(first.epoch, clock.now)


def test_a_lease_is_held_up_to_and_including_its_expiry(lease_store: LeaseStore, clock: Clock) -> None:
    lease = lease_store.acquire("de", "dead-worker", ttl_s=1)
    clock.now = lease.expires_at
    with pytest.raises(LeaseHeldError) as held:
        lease_store.acquire("de", "new-run", ttl_s=60)
    assert held.value.holder == lease
    clock.now = lease.expires_at + 0.001
    assert lease_store.acquire("de", "new-run", ttl_s=60).owner == "new-run"


def test_release_if_unchanged_releases_only_the_row_as_seen(lease_store: LeaseStore, clock: Clock) -> None:
    seen = lease_store.acquire("de", "dead-worker", ttl_s=1)
    clock.now += 0.5
    renewed = lease_store.renew("de", "dead-worker", ttl_s=1)
    assert lease_store.release_if_unchanged(seen) is False  # renewed since: left alone
    assert lease_store.holder("de") == renewed
    assert lease_store.release_if_unchanged(renewed) is True
    assert lease_store.holder("de") is None
    assert lease_store.release_if_unchanged(renewed) is False  # already released


def test_a_sqlite_lease_table_from_before_epochs_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "leases.db"  # parent folders are created
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE etl_leases (entity TEXT PRIMARY KEY, owner TEXT NOT NULL, "
            "expires_at REAL NOT NULL, acquired_at REAL NOT NULL)"
        )
        conn.execute("INSERT INTO etl_leases VALUES ('de', 'old-run', ?, 1)", (time.time() + 60,))
    conn.close()
    store = SqliteLeaseStore(path)
    assert store.renew("de", "old-run", ttl_s=60).epoch == 0  # a run in flight during the upgrade
    assert store.release("de", "old-run")
    assert store.acquire("de", "new-run", ttl_s=60).epoch > 0
    reopened = SqliteLeaseStore(path)  # the next process opens the upgraded table: nothing to add again
    assert reopened.holder("de").owner == "new-run"  # type: ignore[union-attr]


def test_a_new_holders_epoch_grows_also_when_the_clock_went_back(lease_store: LeaseStore, clock: Clock) -> None:
    first = lease_store.acquire("de", "run-A", ttl_s=1)
    assert lease_store.release("de", "run-A")
    clock.now -= 3_600  # an NTP step back: the clock in ms is now below the epoch handed out
    second = lease_store.acquire("de", "run-B", ttl_s=60)
    assert second.epoch == first.epoch + 1


def test_a_sqlite_acquire_waits_for_another_writer_instead_of_failing(tmp_path: Path) -> None:
    """The store's connections wait up to 30 s for SQLite's write lock (sqlite3's default is 5 s): a
    writer that holds it for 10 s delays an acquire, it does not fail it with "database is locked"."""
    store = SqliteLeaseStore(tmp_path / "leases.db")
    writer = sqlite3.connect(tmp_path / "leases.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    calling = threading.Event()
    result: list[object] = []

    def acquire() -> None:
        calling.set()
        try:
            result.append(store.acquire("de", "run-A", ttl_s=60))
        except Exception as exc:  # reported by the assertion below
            result.append(exc)

    thread = threading.Thread(target=acquire)
    thread.start()
    assert calling.wait(30)
    time.sleep(10)  # past sqlite3's 5 s default, well inside the store's 30 s
    writer.execute("COMMIT")
    writer.close()
    thread.join(timeout=60)
    assert len(result) == 1 and isinstance(result[0], Lease), result
    assert result[0].owner == "run-A"


def test_the_sqlite_store_creates_missing_parent_folders(tmp_path: Path) -> None:
    store = SqliteLeaseStore(tmp_path / "a" / "b" / "leases.db")
    assert store.acquire("de", "me", ttl_s=60).owner == "me"
    assert SqliteLeaseStore(tmp_path / "a" / "b" / "leases.db").holder("de") is not None  # opened again


def test_a_dynamodb_lease_row_expires_from_the_table_a_day_after_its_lease(aws: Any) -> None:
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    store = DynamoLeaseStore("leases", client)

    def ttl() -> int:
        return int(client.get_item(TableName="leases", Key={"entity": {"S": "de"}})["Item"]["ttl"]["N"])

    lease = store.acquire("de", "me", ttl_s=60)
    assert ttl() == int(lease.expires_at) + 86_400
    lease = store.renew("de", "me", ttl_s=600)
    assert ttl() == int(lease.expires_at) + 86_400


def test_a_dynamodb_acquire_that_loses_every_race_gives_up_naming_the_holder(aws: Any) -> None:
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    store = DynamoLeaseStore("leases", client)
    store.acquire("de", "dead-worker", ttl_s=0.5)
    time.sleep(0.6)
    rival = boto3.client("dynamodb")
    attempts = []

    def renew_in_between(**_: Any) -> None:  # the dead worker's row changes between each read and write
        attempts.append(1)
        rival.update_item(
            TableName="leases",
            Key={"entity": {"S": "de"}},
            UpdateExpression="SET expires_at = :exp",
            ExpressionAttributeValues={":exp": {"N": repr(time.time() - len(attempts))}},
        )

    client.meta.events.register("before-call.dynamodb.UpdateItem", renew_in_between)
    with pytest.raises(LeaseHeldError, match=r"^de: the entity lease is held by dead-worker \(expires in 0s\)$"):
        store.acquire("de", "new-run", ttl_s=60)
    assert len(attempts) == 10


def test_a_dynamodb_acquire_that_loses_every_race_for_a_free_row_says_contended(aws: Any) -> None:
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    store = DynamoLeaseStore("leases", client)
    store.acquire("de", "old-run", ttl_s=60)
    assert store.release("de", "old-run")  # a free row: nobody to name when the races are lost
    rival = boto3.client("dynamodb")

    def touch_in_between(**_: Any) -> None:
        rival.update_item(
            TableName="leases",
            Key={"entity": {"S": "de"}},
            UpdateExpression="SET expires_at = expires_at - :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )

    client.meta.events.register("before-call.dynamodb.UpdateItem", touch_in_between)
    before = time.time()
    with pytest.raises(
        LeaseHeldError, match=r"^de: the entity lease is held by \(contended\) \(expires in 0s\)$"
    ) as held:
        store.acquire("de", "new-run", ttl_s=60)
    holder = held.value.holder
    assert (holder.entity, holder.owner, holder.epoch) == ("de", "(contended)", 0)
    assert before <= holder.expires_at <= holder.acquired_at <= time.time()


def test_dynamodb_lease_reads_are_strongly_consistent(aws: Any) -> None:
    """moto's reads are always consistent, so the request itself is checked: an eventually consistent
    read could show a stale row (a wrong holder in messages, wasted conditional writes)."""
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    store = DynamoLeaseStore("leases", client)
    reads: list[Any] = []
    client.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: reads.append(dict(params))
    )
    store.acquire("de", "run-A", ttl_s=60)
    assert store.holder("de") is not None
    assert len(reads) == 2 and all(read.get("ConsistentRead") is True for read in reads), reads


def test_open_lease_store_follows_etl_state_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    monkeypatch.delenv("ETL_STATE_STORE", raising=False)
    store = open_lease_store()
    assert isinstance(store, SqliteLeaseStore) and store.path == tmp_path / "state.db"
    monkeypatch.setenv("ETL_STATE_STORE", "dynamodb")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("ETL_LEASES_TABLE", raising=False)
    dynamo = open_lease_store()
    assert isinstance(dynamo, DynamoLeaseStore) and dynamo.table_name == "entity-etl-leases"
    monkeypatch.setenv("ETL_LEASES_TABLE", "my-leases")
    assert open_lease_store().table_name == "my-leases"  # type: ignore[attr-defined]
    monkeypatch.setenv("ETL_STATE_STORE", "redis")
    with pytest.raises(ValueError, match=r"^ETL_STATE_STORE='redis': use 'dynamodb' or 'sqlite'$"):
        open_lease_store()


def test_the_ttl_defaults_to_900_s_and_its_bounds_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_LEASE_TTL_S", raising=False)
    assert default_ttl_s() == 900.0
    monkeypatch.setenv("ETL_LEASE_TTL_S", "0.5")
    assert default_ttl_s() == 0.5
    monkeypatch.setenv("ETL_LEASE_TTL_S", "86400")
    assert default_ttl_s() == 86_400.0
    assert checked_ttl_s(0.5) == 0.5 and checked_ttl_s(86_400.0) == 86_400.0
    with pytest.raises(ValueError, match=r"^lease TTL 86400\.5: must be a number from 0\.5 to 86400 s$"):
        checked_ttl_s(86_400.5)


def test_the_lease_is_lost_just_after_half_the_ttl_without_a_renewal(tmp_path: Path, clock: Clock) -> None:
    store = SqliteLeaseStore(tmp_path / "leases.db")
    keeper = LeaseKeeper(store, "de", "me", ttl_s=8)  # not entered: no renewal thread, the test is the clock
    keeper._renewed = clock.mono
    clock.mono += 4.0
    keeper.check()  # exactly half the TTL: still held
    clock.mono += 0.01
    with pytest.raises(LeaseLostError) as lost:
        keeper.check()
    assert str(lost.value) == (
        "de: this run (me) lost the entity lease: not renewed for 4.0s, over half its 8s TTL, "
        "so another run may soon take it (the renewal did not come back)"
    )
    clock.mono -= 1  # a renewal that comes back late does not undo the loss
    with pytest.raises(LeaseLostError):
        keeper.check()


def test_a_keeper_of_a_lease_taken_before_checks_owner_and_epoch(tmp_path: Path) -> None:
    store = SqliteLeaseStore(tmp_path / "leases.db")
    lease = store.acquire("de", "run-A", ttl_s=60)
    with pytest.raises(LeaseLostError, match=r"^de: this run \(run-B\) does not hold the entity lease; it is now "):
        LeaseKeeper(store, "de", "run-B", ttl_s=60, owner_holds_already=True).__enter__()
    wrong = LeaseKeeper(store, "de", "run-A", ttl_s=60, owner_holds_already=True, expected_epoch=lease.epoch - 1)
    with pytest.raises(
        LeaseLostError, match=rf"of epoch {lease.epoch - 1} it was started with \(now epoch {lease.epoch}\)$"
    ):
        wrong.__enter__()
    with LeaseKeeper(store, "de", "run-A", ttl_s=60, owner_holds_already=True, expected_epoch=lease.epoch) as keeper:
        assert keeper.epoch == lease.epoch
    assert store.holder("de") == Lease("de", "run-A", store.holder("de").expires_at, lease.acquired_at, lease.epoch)  # type: ignore[union-attr]
    store.release("de", "run-A")
    with pytest.raises(LeaseLostError, match=r"does not hold the entity lease$"):  # nobody holds it
        LeaseKeeper(store, "de", "run-A", ttl_s=60, owner_holds_already=True).__enter__()
    with LeaseKeeper(store, "de", "run-B", ttl_s=60) as keeper:  # taken by the keeper: released at the end
        assert store.holder("de") == keeper.lease
    assert store.holder("de") is None


def test_renewing_a_lease_held_by_another_names_entity_and_owner(lease_store: LeaseStore) -> None:
    lease_store.acquire("de", "run-A", ttl_s=60)
    with pytest.raises(LeaseLostError, match=r"^de: run-B no longer holds the entity lease$"):
        lease_store.renew("de", "run-B", ttl_s=60)


def test_a_bad_lease_ttl_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("abc", "86401", "0.4"):
        monkeypatch.setenv("ETL_LEASE_TTL_S", value)
        with pytest.raises(ValueError) as bad:
            default_ttl_s()
        assert str(bad.value) == f"ETL_LEASE_TTL_S={value!r}: must be a number of seconds from 0.5 to 86400"


class FlakyStore(SqliteLeaseStore):
    """A real SQLite lease store whose first renewal fails as a network blip would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.renewals = 0

    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        self.renewals += 1
        if self.renewals == 1:
            raise ConnectionError("blip")
        return super().renew(entity, owner, ttl_s)


def test_a_transient_renewal_error_is_retried_and_the_lease_kept(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "leases.db")
    with LeaseKeeper(store, "de", "me", ttl_s=2) as keeper:
        deadline = time.monotonic() + 30
        while store.renewals < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        keeper.check()
    assert store.renewals >= 3  # renewed again after the failed one


class GatedStore(SqliteLeaseStore):
    """A real SQLite lease store whose renewals wait for the test to open the gate: the keeper's thread
    is held inside a renewal, as in a process frozen or a store that hangs, while others use the store."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.waiting = threading.Event()
        self.gate = threading.Event()

    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        self.renewing_thread = threading.current_thread()
        self.waiting.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().renew(entity, owner, ttl_s)


def take_after_expiry(store: LeaseStore, entity: str, owner: str, ttl_s: float) -> Lease:
    """``owner`` takes the lease as soon as the current holder's has expired (within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return store.acquire(entity, owner, ttl_s)
        except LeaseHeldError:
            assert time.monotonic() < deadline, "the lease never expired"
            time.sleep(0.05)


def stopped_keeper(keeper: LeaseKeeper) -> LeaseKeeper:
    keeper._thread.join(timeout=30)
    assert not keeper._thread.is_alive(), "the renewal thread did not stop on its own"
    return keeper


def test_a_lease_taken_over_by_another_run_is_lost_with_the_stores_message(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "leases.db")
    with LeaseKeeper(store, "de", "run-A", ttl_s=1) as keeper:
        assert store.waiting.wait(30)  # the first renewal hangs
        other = take_after_expiry(store, "de", "run-B", ttl_s=600)
        store.gate.set()  # ... and comes back after run-B took the lease
        stopped_keeper(keeper)
        assert isinstance(keeper.lost, LeaseLostError)
        assert str(keeper.lost) == (
            "de: this run (run-A) lost the entity lease: de: run-A no longer holds the entity lease"
        )
        with pytest.raises(LeaseLostError) as lost:
            keeper.check()
        assert lost.value is keeper.lost
    assert store.holder("de") == other  # run-A's exit did not release run-B's lease


def test_a_lease_taken_again_under_a_new_epoch_is_lost_naming_both_epochs(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "leases.db")
    with LeaseKeeper(store, "de", "run-A", ttl_s=1) as keeper:
        mine = keeper.epoch
        assert store.waiting.wait(30)
        other = take_after_expiry(store, "de", "run-B", ttl_s=600)
        store.release("de", "run-B")
        again = store.acquire("de", "run-A", ttl_s=600)  # run-A's owner id again, as a new holder
        assert again.epoch > other.epoch > mine
        store.gate.set()  # the hung renewal now succeeds, on the new holder's row
        stopped_keeper(keeper)
        assert isinstance(keeper.lost, LeaseLostError)
        assert str(keeper.lost) == (
            f"de: this run (run-A) lost the entity lease: it was taken again (epoch {again.epoch}, this run has {mine})"
        )
        with pytest.raises(LeaseLostError) as lost:
            keeper.check()
        assert lost.value is keeper.lost


class FailingStore(SqliteLeaseStore):
    """A real SQLite lease store whose renewals all fail as a lost network would."""

    def renew(self, entity: str, owner: str, ttl_s: float) -> Lease:
        raise ConnectionError("blip")


def test_a_store_that_keeps_failing_loses_the_lease_naming_the_error(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "leases.db")
    with LeaseKeeper(store, "de", "run-A", ttl_s=1) as keeper:
        stopped_keeper(keeper)  # it gives up by itself once half the TTL has gone without a renewal
        with pytest.raises(LeaseLostError) as lost:
            keeper.check()
    message = str(lost.value)
    assert message.startswith("de: this run (run-A) lost the entity lease: not renewed for ")
    assert message.endswith("s, over half its 1s TTL, so another run may soon take it (ConnectionError: blip)")


def test_a_keeper_not_entered_yet_has_no_lease_and_is_not_lost(tmp_path: Path) -> None:
    keeper = LeaseKeeper(SqliteLeaseStore(tmp_path / "leases.db"), "de", "run-A", ttl_s=60)
    assert keeper.lease is None and keeper.epoch == 0
    keeper.check()  # its half-TTL clock starts now


class RecordingEvent(threading.Event):
    """The keeper's stop event, recording how long the renewal thread waits between renewals."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        return super().wait(timeout)


def test_the_renewal_runs_every_quarter_ttl_on_a_daemon_thread_named_for_the_entity(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "leases.db")
    keeper = LeaseKeeper(store, "de", "run-A", ttl_s=2)
    keeper._stop = stop = RecordingEvent()
    with keeper:
        assert store.waiting.wait(30)
        store.gate.set()
    assert stop.timeouts[0] == 0.5  # a quarter of the 2 s TTL
    # a hung renewal must not keep the process alive at exit; the thread is found by its name
    assert (store.renewing_thread.name, store.renewing_thread.daemon) == ("lease-de", True)


def test_leaving_the_keeper_does_not_wait_for_a_hung_renewal(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "leases.db")
    keeper = LeaseKeeper(store, "de", "run-A", ttl_s=1).__enter__()
    assert store.waiting.wait(30)  # the renewal hangs
    left = threading.Thread(target=keeper.__exit__, args=(None, None, None))
    left.start()
    left.join(timeout=30)  # the keeper waits 5 s for its thread, then leaves it (a daemon)
    returned = not left.is_alive()
    store.gate.set()
    assert returned, "__exit__ waited for the hung renewal"
    assert store.holder("de") is None  # released on the way out
