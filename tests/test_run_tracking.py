"""The stage runtime records every stage in the run store, holds the entity lease, emits metrics."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.runtime import failpoints
from entity_etl.runtime.lease import LeaseLostError, SqliteLeaseStore
from entity_etl.runtime.metrics import CloudWatchMetrics
from entity_etl.runtime.run_store import SqliteRunStore
from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.paused import WhilePaused
from support.pipeline import context, run_all

SQL = "SELECT id, label, amount, changed_at FROM src"


@pytest.fixture
def ctx_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    include = make_include(tmp_path)
    write_entity(include, "xx", sql=SQL)
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, label TEXT, amount TEXT, changed_at TEXT)")
        conn.executemany(
            "INSERT INTO src VALUES (?, ?, ?, ?)",
            [(f"k{i % 40}", f"label {i}", f"{i}.50", f"2026-01-01 00:{i % 60:02d}:00") for i in range(100)],
        )
    monkeypatch.setenv("AIRFLOW_CONN_SRC_XX", json.dumps({"conn_type": "sqlite", "host": str(src)}))
    monkeypatch.setenv("AIRFLOW_CONN_TGT", json.dumps({"conn_type": "sqlite", "host": str(tgt)}))
    monkeypatch.setenv("ETL_STATE_DB", str(tmp_path / "state.db"))
    return lambda **kw: context(include, "xx", tmp_path / "store", **kw)


def test_every_stage_is_recorded(ctx_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = ctx_factory(run_id="run-1")
    stats = run_all(ctx)
    records = SqliteRunStore(tmp_path / "state.db").run_records("xx", "run-1")
    assert [(r.stage, r.status, r.attempt) for r in records] == [(s, "succeeded", 1) for s in ctx.config.stages]
    by_stage = {r.stage: r for r in records}
    assert by_stage["dedupe"].stats["duplicates_removed"] == stats["dedupe"].duplicates_removed == 60
    assert all(r.ended_at >= r.started_at for r in records)
    # A rerun of one stage by hand is attempt 2.
    run_stage(ctx, "dedupe")
    again = SqliteRunStore(tmp_path / "state.db").get("xx", "run-1", "dedupe")
    assert again is not None and (again.attempt, again.status) == (2, "succeeded")


def test_a_failed_stage_is_recorded_with_its_error(ctx_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = ctx_factory(run_id="run-2")
    with pytest.raises(StageError):
        run_stage(ctx, "load_staging")  # no extract yet
    record = SqliteRunStore(tmp_path / "state.db").get("xx", "run-2", "load_staging")
    assert record is not None and record.status == "failed"
    assert record.error.startswith("xx: no finished extract for run 'run-2'")


def test_replayed_attempt_after_success_is_refused(ctx_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_stage(ctx_factory(run_id="run-3", attempt=1), "cleanup")
    with pytest.raises(
        StageError,
        match=r"xx: cleanup: not started: .*rejected running \(attempt 1\); the store already holds succeeded",
    ):
        run_stage(ctx_factory(run_id="run-3", attempt=1), "cleanup")


def test_stage_run_by_hand_respects_a_held_lease(ctx_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    leases = SqliteLeaseStore(tmp_path / "state.db")
    leases.acquire("xx", "etl_xx/scheduled__2026-01-01 (other environment)", ttl_s=600)
    with pytest.raises(
        StageError,
        match=r"^xx: cleanup: xx: the entity lease is held by etl_xx/scheduled__2026-01-01 \(other environment\)",
    ):
        run_stage(ctx_factory(run_id="run-4"), "cleanup")
    # The owning run proceeds; a hand-run stage frees the lease it took when done.
    run_stage(ctx_factory(run_id="run-4", lease_owner="etl_xx/scheduled__2026-01-01 (other environment)"), "cleanup")
    leases.release("xx", "etl_xx/scheduled__2026-01-01 (other environment)")
    run_stage(ctx_factory(run_id="run-5"), "cleanup")
    assert leases.holder("xx") is None


def test_a_run_that_lost_its_lease_stops(ctx_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StageError, match=r"xx: cleanup: xx: this run \(etl_xx/r6\) does not hold the entity lease"):
        run_stage(ctx_factory(run_id="r6", lease_owner="etl_xx/r6"), "cleanup")


def test_metrics_reach_cloudwatch_with_entity_and_stage(ctx_factory, aws) -> None:  # type: ignore[no-untyped-def]
    sink = CloudWatchMetrics("EntityETLTest")
    ok = ctx_factory(run_id="run-7")
    ok.metrics = sink
    run_all(ok, ["cleanup", "extract", "load_staging", "dedupe"])
    failing = ctx_factory(run_id="run-8")
    failing.metrics = sink
    with pytest.raises(StageError):
        run_stage(failing, "load_staging")  # no extract for run-8

    cloudwatch = boto3.client("cloudwatch")
    metrics = cloudwatch.list_metrics(Namespace="EntityETLTest")["Metrics"]
    seen = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
    assert ("DuplicatesRemoved", (("entity", "xx"), ("stage", "dedupe"))) in seen
    assert ("RowsOut", (("entity", "xx"), ("stage", "extract"))) in seen
    assert ("Failures", (("entity", "xx"), ("stage", "load_staging"))) in seen

    def query(metric: str, stage: str) -> dict[str, object]:
        dims = [{"Name": "entity", "Value": "xx"}, {"Name": "stage", "Value": stage}]
        return {
            "Id": metric.lower(),
            "MetricStat": {
                "Metric": {"Namespace": "EntityETLTest", "MetricName": metric, "Dimensions": dims},
                "Period": 60,
                "Stat": "Sum",
            },
        }

    now = dt.datetime.now(dt.UTC)
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[query("DuplicatesRemoved", "dedupe"), query("Failures", "load_staging")],  # type: ignore[list-item]
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=10),
    )
    values = {r["Id"]: sum(r["Values"]) for r in data["MetricDataResults"]}
    assert values == {"duplicatesremoved": 60, "failures": 1}  # run-7's load_staging reported 0 failures


def test_a_run_whose_lease_is_taken_over_mid_stage_stops_at_the_next_checkpoint(  # type: ignore[no-untyped-def]
    ctx_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, other = "etl_xx/r9", "env-b:etl_xx/r9"
    leases = SqliteLeaseStore(tmp_path / "state.db")
    monkeypatch.setenv("ETL_LEASE_TTL_S", "3")  # renewed every 0.75 s; lost after 1.5 s without a renewal
    leases.acquire("xx", owner, ttl_s=3)
    run_all(ctx_factory(run_id="r9", lease_owner=owner), ["cleanup", "extract", "load_staging", "dedupe"])

    monkeypatch.setenv("ETL_FAILPOINTS", "load_target.chunk_committed=pause")
    monkeypatch.setenv("ETL_FAILPOINT_DIR", str(tmp_path))
    failpoints.reload()
    marker = tmp_path / "load_target.chunk_committed.paused"

    refused = threading.Event()  # the paused run's keeper tried to renew and was told the lease is gone
    renew = SqliteLeaseStore.renew

    def watched_renew(self: SqliteLeaseStore, entity: str, owner: str, ttl_s: float) -> Any:
        try:
            return renew(self, entity, owner, ttl_s)
        except LeaseLostError:
            refused.set()
            raise

    monkeypatch.setattr(SqliteLeaseStore, "renew", watched_renew)

    def take_over() -> None:  # another environment's run, while this one is paused mid-stage
        assert leases.release("xx", owner)
        leases.acquire("xx", other, ttl_s=600)
        assert refused.wait(60), "the paused run's keeper never renewed"

    try:
        with (
            WhilePaused(marker, take_over),
            pytest.raises(StageError, match=r"^xx: load_target: xx: this run \(etl_xx/r9\) lost the entity lease"),
        ):
            run_stage(ctx_factory(run_id="r9", lease_owner=owner), "load_target")
    finally:
        monkeypatch.delenv("ETL_FAILPOINTS")
        failpoints.reload()
    store = SqliteRunStore(tmp_path / "state.db")
    record = store.get("xx", "r9", "load_target")
    assert record is not None and record.status == "failed" and "lost the entity lease" in record.error
    assert store.checkpoints("xx", "r9", "load_target") == []  # stopped before it checkpointed
    holder = leases.holder("xx")
    assert holder is not None and holder.owner == other  # the new holder keeps it


def test_an_unexpected_error_is_one_line_and_recorded_as_failed(ctx_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = ctx_factory(run_id="r10")
    run_all(ctx, ["cleanup", "extract"])

    def broken_get(key: str) -> bytes:
        raise PermissionError(13, "Permission denied", key)  # as an object store that cannot read

    ctx.store.get_bytes = broken_get  # type: ignore[method-assign]
    with pytest.raises(StageError) as raised:
        run_stage(ctx, "load_staging")
    message = str(raised.value)
    assert message.startswith("xx: load_staging: PermissionError: ") and "\n" not in message
    record = SqliteRunStore(tmp_path / "state.db").get("xx", "r10", "load_staging")
    assert record is not None and record.status == "failed" and record.error == message


def test_a_metrics_failure_never_fails_the_stage(  # type: ignore[no-untyped-def]
    ctx_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    ctx = ctx_factory(run_id="r11")
    ctx.metrics = CloudWatchMetrics("EntityETLTest")  # no credentials anywhere: every put fails
    with caplog.at_level("WARNING"):
        run_stage(ctx, "cleanup")
    record = SqliteRunStore(tmp_path / "state.db").get("xx", "r11", "cleanup")
    assert record is not None and record.status == "succeeded"
    assert "xx: cleanup: metrics not sent" in caplog.text


def test_a_multi_line_cause_is_one_line() -> None:
    assert str(StageError("xx: extract: near 'SELEC id\n  FROM src\r\n' at line 1")) == (
        "xx: extract: near 'SELEC id FROM src ' at line 1"
    )


def test_a_stage_connection_is_opened_once(ctx_factory) -> None:  # type: ignore[no-untyped-def]
    db = ctx_factory(run_id="r12").connect("tgt")  # as every stage does: `with ctx.connect(...) as db`
    opened = db.conn
    with db as same:
        assert same.conn is opened  # not a second connection, leaving the first one open
    assert not db.connected
