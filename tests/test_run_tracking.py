"""The stage runtime records every stage in the run store, holds the entity lease, emits metrics."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import boto3
import pytest

from entity_etl.runtime.lease import SqliteLeaseStore
from entity_etl.runtime.metrics import CloudWatchMetrics
from entity_etl.runtime.run_store import SqliteRunStore
from entity_etl.runtime.stages import StageError, run_stage
from entity_files import make_include, write_entity
from pipeline import context, run_all

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
