"""A run that lost its entity lease never commits: the lease epoch, the target's ``etl_fence`` row checked
in each commit's transaction, the half-TTL rule, and the validated numeric settings. On SQLite and on
MariaDB (tests/support/servers.py); the DynamoDB lease store on a real moto server."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.runtime import failpoints, fencing
from entity_etl.runtime.connections import resolve_connection
from entity_etl.runtime.databases import open_database
from entity_etl.runtime.lease import DynamoLeaseStore, LeaseKeeper, LeaseStore, SqliteLeaseStore
from entity_etl.runtime.run_store import SqliteRunStore
from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.paused import WhilePaused
from support.pipeline import context, etlctl_run_stage, run_all
from support.scratch_db import ScratchDb
from support.servers import MariaDB

ENTITY = """\
entity: fx
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: fx_src, extract_sql: fx/extract.sql, chunk_rows: 1000}
staging: {table: stg_fx}
target: {conn_id: fx_tgt, table: t_fx, chunk_rows: 1000}
columns:
  - {name: id, type: string(20)}
  - {name: val, type: string(50)}
  - {name: v, type: integer}
dedupe: {key: [id], keep: newest, order_by: v}
"""
SQL = "SELECT id, val, v FROM src"
A, B = "etl_fx/run-a", "etl_fx/run-b"


class Target(ScratchDb):
    """The entity's database (source and target in one): a SQLite file or a fresh MariaDB database."""

    def __init__(self, kind: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, mariadb: Any = None, db: str = ""):
        super().__init__(kind, tmp / "fx.db", mariadb, db)
        monkeypatch.setenv("AIRFLOW_CONN_FX_SRC", self.conn_json())
        monkeypatch.setenv("AIRFLOW_CONN_FX_TGT", self.conn_json())
        self.sql("CREATE TABLE src (id VARCHAR(20), val VARCHAR(50), v INTEGER)")
        # 2,500 rows, 2,000 keys: three extract parts, three target chunks, 500 duplicates.
        self.sql("INSERT INTO src VALUES (%s, %s, %s)", [(f"k{i % 2000:05d}", f"old {i}", i) for i in range(2500)])

    def checksum(self) -> str:
        """The staging and target tables' contents, in key order."""
        staged = self.sql("SELECT _etl_row, id, val, v FROM stg_fx ORDER BY _etl_row")
        target = self.sql("SELECT id, val, v FROM t_fx ORDER BY id") if self.has("t_fx") else []
        return hashlib.sha256(repr((staged, target)).encode()).hexdigest()

    def has(self, table: str) -> bool:
        if self.kind == "sqlite":
            return bool(self.sql(f"SELECT name FROM sqlite_master WHERE name = '{table}'"))
        return bool(self.sql(f"SHOW TABLES LIKE '{table}'"))


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    if request.param == "mariadb":
        mariadb: MariaDB = request.getfixturevalue("mariadb")
        yield Target("mariadb", tmp_path, monkeypatch, mariadb, request.getfixturevalue("mariadb_db"))
    else:
        yield Target("sqlite", tmp_path, monkeypatch)


@pytest.fixture
def include(tmp_path: Path) -> Path:
    folder = make_include(tmp_path)
    write_entity(folder, "fx", ENTITY, SQL)
    return folder


def advance_fence(owner: str, epoch: int) -> None:
    """What a run's stage does first: raise the entity's fence in the target to its epoch."""
    with open_database(resolve_connection("fx_tgt")) as db:
        db.connect()
        fencing.advance(db, fencing.Fence("fx", epoch, owner))


# Where run A stops while run B takes the entity over: after a commit of its stage (so the next one is
# the one fenced), or, for dedupe's single commit, right after its stage raised the fence.
PAUSE_AT = {
    "load_staging": "load_staging.part_committed",
    "dedupe": "fence.advanced",
    "load_target": "load_target.chunk_committed",
}
BEFORE = {"load_staging": ["cleanup", "extract"], "dedupe": ["load_staging"], "load_target": ["dedupe"]}


@pytest.mark.parametrize("stage", list(PAUSE_AT))
def test_a_run_whose_lease_was_taken_over_never_commits_again(
    stage: str, target: Target, include: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leases = SqliteLeaseStore(tmp_path / "state.db")
    # An earlier run loaded the target; then the source changed, and run A loads the change.
    first = leases.acquire("fx", "etl_fx/run-0", ttl_s=600)
    run_all(context(include, "fx", tmp_path / "store", run_id="run-0", lease_owner="etl_fx/run-0"))
    leases.release("fx", "etl_fx/run-0")
    target.sql("UPDATE src SET val = 'new', v = v + 10000")
    lease_a = leases.acquire("fx", A, ttl_s=600)
    assert lease_a.epoch > first.epoch
    stages = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
    ctx = context(include, "fx", tmp_path / "store", run_id="run-a", lease_owner=A)
    run_all(ctx, stages[: stages.index(stage)])

    monkeypatch.setenv("ETL_FAILPOINTS", f"{PAUSE_AT[stage]}=pause")
    monkeypatch.setenv("ETL_FAILPOINT_DIR", str(tmp_path))
    failpoints.reload()
    marker = tmp_path / f"{PAUSE_AT[stage]}.paused"
    seen: dict[str, Any] = {}

    def take_over() -> None:  # A is stuck (its teardown released the lease); B takes the entity
        assert leases.release("fx", A)
        seen["b"] = leases.acquire("fx", B, ttl_s=600)
        advance_fence(B, seen["b"].epoch)
        seen["checksum"] = target.checksum()

    try:
        with WhilePaused(marker, take_over), pytest.raises(StageError) as failure:
            run_stage(ctx, stage)
    finally:
        monkeypatch.delenv("ETL_FAILPOINTS")
        failpoints.reload()
    epoch_b = seen["b"].epoch
    assert epoch_b > lease_a.epoch
    assert str(failure.value) == (
        f"fx: {stage}: lease lost: a newer run ({B}, epoch {epoch_b}) holds fx; "
        f"this run ({A}, epoch {lease_a.epoch}) rolled back its uncommitted writes"
    )
    assert target.checksum() == seen["checksum"]  # nothing of A's landed after B took over
    record = SqliteRunStore(tmp_path / "state.db").get("fx", "run-a", stage)
    assert record is not None and record.status == "failed" and "lease lost: a newer run" in record.error
    # The newer holder commits as usual.
    run_all(context(include, "fx", tmp_path / "store", run_id="run-b", lease_owner=B))
    rows = target.sql("SELECT COUNT(*), MIN(val), MAX(val), MIN(v) FROM t_fx")
    assert rows == [(2000, "new", "new", 10500)]


def test_a_lease_lost_while_a_chunk_commits_leaves_that_chunk_unrecorded(
    target: Target, include: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keeper finds the lease gone between load_target's first commit and its checkpoint: the stage
    stops there, with no checkpoint written after the loss (the retry redoes that chunk; the upsert
    converges). The fence is left as it was, so only the keeper's own check can stop the stage."""
    leases = SqliteLeaseStore(tmp_path / "state.db")
    leases.acquire("fx", A, ttl_s=600)
    ctx = context(include, "fx", tmp_path / "store", run_id="run-a", lease_owner=A)
    run_all(ctx, ["cleanup", "extract", "load_staging", "dedupe"])
    monkeypatch.setenv("ETL_LEASE_TTL_S", "4")  # load_target's keeper renews every second
    monkeypatch.setenv("ETL_FAILPOINTS", "load_target.chunk_committed=pause")
    monkeypatch.setenv("ETL_FAILPOINT_DIR", str(tmp_path))
    failpoints.reload()

    def take_over() -> None:  # B takes the entity (the fence stays at A's epoch); A's next renewal fails
        assert leases.release("fx", A)
        leases.acquire("fx", B, ttl_s=600)
        time.sleep(2.5)

    try:
        lost = rf"^fx: load_target: fx: this run \({A}\) lost the entity lease: "
        with (
            WhilePaused(tmp_path / "load_target.chunk_committed.paused", take_over),
            pytest.raises(StageError, match=lost),
        ):
            run_stage(ctx, "load_target")
    finally:
        monkeypatch.delenv("ETL_FAILPOINTS")
        failpoints.reload()
    assert SqliteRunStore(tmp_path / "state.db").checkpoints("fx", "run-a", "load_target") == []
    # The chunk that committed before the loss (the first 1,000 row ids) is in the target; nothing after it.
    first_chunk = "SELECT COUNT(*) FROM stg_fx WHERE _etl_row < (SELECT MIN(_etl_row) FROM stg_fx) + 1000"
    assert target.sql("SELECT COUNT(*) FROM t_fx") == target.sql(first_chunk) != [(0,)]


def test_a_stage_does_not_start_below_the_fence(target: Target, include: Path, tmp_path: Path) -> None:
    advance_fence(B, 10**13)
    with open_database(resolve_connection("fx_tgt")) as db:
        db.connect()
        with pytest.raises(
            fencing.FencedOutError, match=rf"^lease lost: a newer run \({B}, epoch {10**13}\) holds fx; "
        ):
            fencing.advance(db, fencing.Fence("fx", 10**13 - 1, A))
        fencing.advance(db, fencing.Fence("fx", 10**13, B))  # the holder itself, again: fine
        # A run whose lease store was reset starts from the clock and stays above the fence of before.
        leases = SqliteLeaseStore(tmp_path / "fresh-state.db")
        lease = leases.acquire("fx", "etl_fx/run-c", ttl_s=60)
        assert lease.epoch >= int(time.time() * 1000) - 60_000
        assert target.sql("SELECT epoch, owner FROM etl_fence") == [(10**13, B)]


def test_the_job_refuses_a_lease_of_another_epoch(target: Target, include: Path, tmp_path: Path) -> None:
    lease = SqliteLeaseStore(tmp_path / "state.db").acquire("fx", A, ttl_s=600)
    ctx = context(include, "fx", tmp_path / "store", run_id="run-a", lease_owner=A)
    ctx.lease_epoch = lease.epoch - 1  # as ETL_LEASE_EPOCH says when the task saw an older lease
    with pytest.raises(
        StageError, match=rf"no longer holds the entity lease of epoch {lease.epoch - 1} .*now epoch {lease.epoch}\)"
    ):
        run_stage(ctx, "cleanup")
    ctx.lease_epoch = lease.epoch
    run_stage(ctx, "cleanup")
    assert target.sql("SELECT epoch, owner FROM etl_fence") == [(lease.epoch, A)]


# -- the lease epoch, in both stores -------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def lease_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeaseStore]:
    if request.param == "sqlite":
        yield SqliteLeaseStore(tmp_path / "leases.db")
        return
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    yield DynamoLeaseStore("leases", client)


def test_the_epoch_grows_with_each_new_holder_only(lease_store: LeaseStore) -> None:
    a = lease_store.acquire("de", "a", ttl_s=0.5)
    assert a.epoch >= int(time.time() * 1000) - 60_000
    assert lease_store.renew("de", "a", ttl_s=0.5).epoch == a.epoch
    assert lease_store.acquire("de", "a", ttl_s=0.5).epoch == a.epoch  # re-acquired by its owner: kept
    time.sleep(0.6)
    b = lease_store.acquire("de", "b", ttl_s=60)  # a's lease expired: b takes it over
    assert b.epoch > a.epoch
    holder = lease_store.holder("de")
    assert holder is not None and (holder.owner, holder.epoch) == ("b", b.epoch)
    assert lease_store.release("de", "b")
    assert lease_store.holder("de") is None
    c = lease_store.acquire("de", "c", ttl_s=60)  # after a release, still above every earlier epoch
    assert c.epoch > b.epoch
    assert lease_store.acquire("jp", "c", ttl_s=60).epoch > 0  # other entities count on their own


def test_a_dynamodb_lease_row_from_before_epochs(aws: Any) -> None:
    client = boto3.client("dynamodb")
    client.create_table(**DynamoLeaseStore.table_definition("leases"))
    old = {"entity": {"S": "de"}, "owner": {"S": "old-run"}, "acquired_at": {"N": "1"}}
    client.put_item(TableName="leases", Item={**old, "expires_at": {"N": str(time.time() + 60)}})
    store = DynamoLeaseStore("leases", client)
    assert store.renew("de", "old-run", ttl_s=60).epoch == 0  # a run in flight during the upgrade
    client.put_item(TableName="leases", Item={**old, "expires_at": {"N": "2"}})  # then expired
    lease = store.acquire("de", "new-run", ttl_s=60)
    assert lease.epoch > 0
    item = client.get_item(TableName="leases", Key={"entity": {"S": "de"}})["Item"]
    assert (item["owner"]["S"], int(item["epoch"]["N"])) == ("new-run", lease.epoch)


# -- the half-TTL rule --------------------------------------------------------------------------------
def test_the_lease_is_lost_at_half_the_ttl_when_renewals_stall(tmp_path: Path) -> None:
    path = tmp_path / "leases.db"
    store = SqliteLeaseStore(path)
    ttl = 4.0  # wide enough for a loaded machine: a renewal may come up to a second late
    store.acquire("de", "me", ttl_s=ttl)
    with LeaseKeeper(store, "de", "me", ttl_s=ttl, owner_holds_already=True) as keeper:
        entered = time.monotonic()
        while time.monotonic() - entered < 2.5:  # healthy: renewed every quarter of the TTL
            holder = store.holder("de")
            assert holder is not None and holder.expires_at - time.time() > ttl / 2
            keeper.check()
            time.sleep(0.05)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the store stops answering: the next renewal hangs
        stalled = time.monotonic()
        expires_at = store_expiry(path, blocker)
        try:
            while True:
                try:
                    keeper.check()
                except Exception as exc:
                    lost_after = time.monotonic() - stalled
                    message = str(exc)
                    break
                assert time.monotonic() - stalled < ttl, "the lease was never declared lost"
                time.sleep(0.01)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # Lost no later than half the TTL after the last renewal (which was at most a quarter TTL before
        # the stall), so before the row expired and another run could take it.
        assert lost_after <= ttl / 2 + 0.5
        assert time.time() < expires_at
        assert message.startswith("de: this run (me) lost the entity lease: not renewed for ")
        assert "over half its 4s TTL" in message
        time.sleep(0.4)  # the hung renewal goes through now; the loss stands
        with pytest.raises(Exception, match="lost the entity lease"):
            keeper.check()


def store_expiry(path: Path, conn: sqlite3.Connection) -> float:
    return float(conn.execute("SELECT expires_at FROM etl_leases WHERE entity = 'de'").fetchone()[0])


# -- numeric settings -----------------------------------------------------------------------------------
BAD_SETTINGS = [
    ("ETL_LEASE_TTL_S", "0", "a number of seconds from 0.5 to 86400"),
    ("ETL_LEASE_TTL_S", "-5", "a number of seconds from 0.5 to 86400"),
    ("ETL_LEASE_TTL_S", "nan", "a number of seconds from 0.5 to 86400"),
    ("ETL_LEASE_TTL_S", "inf", "a number of seconds from 0.5 to 86400"),
    ("ETL_LEASE_TTL_S", "abc", "a number of seconds from 0.5 to 86400"),
    ("ETL_LEASE_TTL_S", "0.01", "a number of seconds from 0.5 to 86400"),
    ("ETL_ATTEMPT", "0", "an integer at least 1"),
    ("ETL_ATTEMPT", "two", "an integer at least 1"),
    ("ETL_LEASE_EPOCH", "-1", "an integer at least 0"),
    ("ETL_LEASE_EPOCH", "1.5", "an integer at least 0"),
]


@pytest.mark.parametrize(("name", "value", "rule"), BAD_SETTINGS)
def test_a_bad_numeric_setting_is_one_line_at_start(
    name: str, value: str, rule: str, include: Path, tmp_path: Path
) -> None:
    db = tmp_path / "fx.db"
    env = {
        **os.environ,
        "ETL_INCLUDE_DIR": str(include),
        "AIRFLOW_CONN_FX_TGT": json.dumps({"conn_type": "sqlite", "host": str(db)}),
        "ETL_STATE_DB": str(tmp_path / "state.db"),
        name: value,
    }
    started = time.monotonic()
    result = etlctl_run_stage("fx", "cleanup", tmp_path / "store", env=env, timeout=60)
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"etlctl: error: {name}={value!r}: must be {rule}"]
    assert not db.exists() and not (tmp_path / "store").exists()  # nothing opened, nothing written
    assert not (tmp_path / "state.db").exists()


def test_a_lease_keeper_refuses_a_bad_ttl(tmp_path: Path) -> None:
    store = SqliteLeaseStore(tmp_path / "leases.db")
    for ttl in (0.0, -1.0, math.nan, math.inf, 0.1):
        with pytest.raises(ValueError, match=r"^lease TTL .*: must be a number from 0.5 to 86400 s$"):
            LeaseKeeper(store, "de", "me", ttl_s=ttl)
