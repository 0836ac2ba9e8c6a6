"""``etlctl`` beyond the audit table: every attempt of a retried stage (the attempt history of both run
stores, DynamoDB on a real moto server), the stage order guard of ``run-stage`` and ``--force``, the
entity lease (``etlctl lease``, taking over a provably dead holder, never a live one, after a real
SIGKILLed hand run), a missing SQLite source file, and argparse's usage errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from entity_etl.cli import build_parser, main
from entity_etl.runtime.lease import Lease, LeaseStore, SqliteLeaseStore
from entity_etl.runtime.lease_takeover import take_over_dead, why_gone
from entity_etl.runtime.run_store import (
    DynamoRunStore,
    RunStore,
    SqliteRunStore,
    StageRecord,
    StaleUpdateError,
    default_state_path,
)
from support.entity_files import make_include, write_entity
from support.lease_stores import lease_store
from support.pipeline import etlctl_run_stage

__all__ = ["lease_store"]  # the SQLite / DynamoDB fixture of support/lease_stores.py

HOST = socket.gethostname()


def forbid_scan(**_: Any) -> None:
    raise AssertionError("the run store called DynamoDB Scan")


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def run_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    if request.param == "sqlite":
        yield SqliteRunStore(tmp_path / "state.db")
        return
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb")
    client.create_table(**DynamoRunStore.table_definition("runs"))
    client.meta.events.register("before-call.dynamodb.Scan", forbid_scan)
    yield DynamoRunStore("runs", client)


def rec(stage: str, status: str, attempt: int, started: str, **kw: Any) -> StageRecord:
    return StageRecord("de", "r1", stage, status, attempt=attempt, started_at=started, **kw)


def retried_extract(store: RunStore) -> None:
    """extract: attempt 1 fails, attempt 2 succeeds; a late replay of attempt 1 is rejected."""
    store.put(rec("extract", "running", 1, "2026-11-01T08:00:00.000+00:00"))
    store.put(rec("extract", "failed", 1, "2026-11-01T08:00:00.000+00:00", error="lost connection"))
    store.put(rec("extract", "running", 2, "2026-11-01T08:05:00.000+00:00"))
    store.put(rec("extract", "succeeded", 2, "2026-11-01T08:05:00.000+00:00", stats={"rows_out": 7}))
    with pytest.raises(StaleUpdateError):
        store.put(rec("extract", "succeeded", 1, "2026-11-01T08:00:00.000+00:00"))


def test_every_attempt_is_kept(run_store: RunStore) -> None:
    retried_extract(run_store)
    run_store.put(rec("load_staging", "running", 1, "2026-11-01T08:10:00.000+00:00"))
    tries = [(r.stage, r.attempt, r.status, r.error) for r in run_store.attempts("de")]
    assert tries == [
        ("extract", 1, "failed", "lost connection"),  # not the rejected late "succeeded"
        ("extract", 2, "succeeded", ""),
        ("load_staging", 1, "running", ""),
    ]
    assert run_store.attempts("de")[1].stats == {"rows_out": 7}
    # The main records and the audit indexes still hold one record per stage.
    assert [(r.stage, r.attempt) for r in run_store.by_entity("de")] == [("extract", 2), ("load_staging", 1)]
    assert [(r.stage, r.attempt) for r in run_store.by_day("2026-11-01")] == [("extract", 2), ("load_staging", 1)]
    assert [r.stage for r in run_store.run_records("de", "r1")] == ["extract", "load_staging"]
    assert [r.attempt for r in run_store.attempts("de", since="2026-11-01T08:01")] == [2, 1]
    assert run_store.attempts("jp") == []


def test_a_record_from_before_the_history_is_still_listed(tmp_path: Path) -> None:
    store = SqliteRunStore(tmp_path / "state.db")
    store.put(rec("extract", "succeeded", 3, "2026-11-01T08:00:00.000+00:00"))
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM etl_attempts")  # as a file written by the previous version
    assert [(r.stage, r.attempt) for r in store.attempts("de")] == [("extract", 3)]


@pytest.fixture
def sqlite_env(monkeypatch: pytest.MonkeyPatch) -> SqliteRunStore:
    monkeypatch.setenv("ETL_STATE_STORE", "sqlite")
    return SqliteRunStore(default_state_path())


def test_runs_shows_every_try_and_names_the_store(
    sqlite_env: SqliteRunStore, capsys: pytest.CaptureFixture[str]
) -> None:
    retried_extract(sqlite_env)
    capsys.readouterr()
    assert main(["runs", "--entity", "de"]) == 0
    header, columns, _ruler, *rows = capsys.readouterr().out.splitlines()
    assert header == f"run store: sqlite {sqlite_env.path}"
    assert columns.split()[:4] == ["run_id", "stage", "status", "try"]
    assert [row.split()[:4] for row in rows] == [["r1", "extract", "failed", "1"], ["r1", "extract", "succeeded", "2"]]


def test_runs_on_a_missing_sqlite_store_is_an_error_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "state.db"
    monkeypatch.setenv("ETL_STATE_STORE", "sqlite")
    monkeypatch.setenv("ETL_STATE_DB", str(missing))
    assert main(["runs", "--entity", "de"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"etlctl: error: run store: sqlite {missing} does not exist")
    assert not missing.parent.exists()


# -- run-stage: the stage order guard ------------------------------------------------------------------
@pytest.fixture
def hand_run(tmp_path: Path) -> dict[str, Any]:
    """An entity on SQLite source and target, in a child process's environment."""
    include = make_include(tmp_path)
    write_entity(include, "oo")
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, label TEXT, amount TEXT, changed_at TEXT)")
        conn.executemany(
            "INSERT INTO src VALUES (?, ?, ?, ?)",
            [(f"k{i % 5}", f"label {i}", f"{i}.5", f"2026-01-01 01:{i:02d}:00") for i in range(12)],
        )
    env = {
        **os.environ,
        "ETL_INCLUDE_DIR": str(include),
        "ETL_STATE_STORE": "sqlite",
        "ETL_STATE_DB": str(tmp_path / "state.db"),
        "AIRFLOW_CONN_SRC_OO": json.dumps({"conn_type": "sqlite", "host": str(src)}),
        "AIRFLOW_CONN_TGT": json.dumps({"conn_type": "sqlite", "host": str(tgt)}),
    }
    env.pop("ETL_LEASE_OWNER", None)
    env.pop("ETL_FAILPOINTS", None)
    return {"env": env, "store": tmp_path / "store", "src": src, "tgt": tgt, "state": tmp_path / "state.db"}


def stage(
    hand_run: dict[str, Any], name: str, force: bool = False, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**hand_run["env"], **(env_extra or {})}
    return etlctl_run_stage("oo", name, hand_run["store"], env=env, timeout=120, force=force)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_stage_before_its_predecessors_is_refused(hand_run: dict[str, Any]) -> None:
    proc = stage(hand_run, "load_staging")
    assert proc.returncode == 1 and proc.stdout == ""
    assert one_line(proc) == (
        "etlctl: error: oo: load_staging: the earlier stage cleanup has not succeeded for run 'r1' "
        "(no record); run it first, or pass --force"
    )
    assert not hand_run["tgt"].exists()  # nothing opened
    assert stage(hand_run, "cleanup").returncode == 0
    refused = one_line(stage(hand_run, "load_staging"))
    assert "the earlier stage extract has not succeeded for run 'r1' (no record)" in refused
    forced = stage(hand_run, "load_staging", force=True)  # past the guard: the stage's own error
    assert forced.returncode == 1 and "earlier stage" not in forced.stderr, forced.stderr
    for name in ("extract", "load_staging", "dedupe", "load_target"):
        proc = stage(hand_run, name)
        assert proc.returncode == 0, proc.stderr[-800:]
    with sqlite3.connect(hand_run["tgt"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t_oo").fetchone() == (5,)


def test_a_missing_sqlite_source_is_an_error_not_a_new_database(hand_run: dict[str, Any]) -> None:
    hand_run["src"].unlink()
    proc = stage(hand_run, "extract", force=True)
    assert proc.returncode == 1
    line = one_line(proc)
    assert line.startswith("etlctl: error: oo: extract: cannot open source ") and str(hand_run["src"]) in line
    assert not hand_run["src"].exists()


# -- the entity lease --------------------------------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_take_over_only_a_provably_gone_holder(lease_store: LeaseStore) -> None:
    now = time.time()
    live = Lease("de", f"etlctl:r1@{HOST}:{os.getpid()}", now + 600, now)
    assert why_gone(live) is None
    assert why_gone(Lease("de", f"etlctl:r1@other-host:{dead_pid()}", now + 600, now)) is None
    assert why_gone(Lease("de", "etl_de/scheduled__1", now + 600, now)) is None  # an orchestrated run
    assert why_gone(Lease("de", "etl_de/scheduled__1", now - 5, now - 900), now=now) == "the lease expired 5s ago"
    pid = dead_pid()
    assert why_gone(Lease("de", f"etlctl:r1@{HOST}:{pid}", now + 600, now)) == (
        f"no process {pid} exists on this host ({HOST})"
    )

    lease_store.acquire("de", live.owner, 600)
    released, line = take_over_dead(lease_store, "de")
    assert not released and "is alive: stop it first" in line
    assert lease_store.holder("de") is not None and lease_store.holder("de").owner == live.owner  # type: ignore[union-attr]
    lease_store.release("de", live.owner)

    dead = f"etlctl:r2@{HOST}:{pid}"
    held = lease_store.acquire("de", dead, 600)
    renewed = lease_store.renew("de", dead, 900)  # the row changed after `held` was read
    assert not lease_store.release_if_unchanged(held)
    assert lease_store.holder("de") is not None
    assert lease_store.release_if_unchanged(Lease("de", dead, renewed.expires_at, held.acquired_at, held.epoch))
    assert lease_store.holder("de") is None
    after = lease_store.acquire("de", "etlctl:r3@x:1", 600)
    assert after.epoch > held.epoch  # the epoch still only grows


def lease_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["lease", "--entity", "oo", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_killed_hand_run_is_taken_over_and_rerun(
    hand_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ETL_INCLUDE_DIR", "ETL_STATE_STORE", "ETL_STATE_DB"):
        monkeypatch.setenv(name, hand_run["env"][name])
    assert lease_cli(capsys) == (0, "oo: the entity lease is free\n", "")
    assert stage(hand_run, "cleanup").returncode == 0
    killed = stage(hand_run, "extract", env_extra={"ETL_FAILPOINTS": "extract.part_uploaded=kill"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-800:]

    refused = stage(hand_run, "extract")
    assert refused.returncode == 1 and "the entity lease is held by etlctl:r1@" in one_line(refused)

    code, out, err = lease_cli(capsys)
    assert code == 0 and err == ""
    holder, acquired, expires, epoch = out.splitlines()
    assert holder.startswith(f"oo: held by etlctl:r1@{HOST}:")
    assert acquired.startswith("acquired_at: 20") and acquired.endswith("+00:00")
    assert expires.startswith("expires_at: 20") and "+00:00 (in " in expires and int(epoch.split()[1]) > 0

    code, out, err = lease_cli(capsys, "--take-over-dead")
    assert (code, err) == (0, "")
    assert out.startswith("oo: released the lease of etlctl:r1@") and "no process" in out
    assert lease_cli(capsys) == (0, "oo: the entity lease is free\n", "")
    for name in ("extract", "load_staging", "dedupe", "load_target"):
        proc = stage(hand_run, name)
        assert proc.returncode == 0, proc.stderr[-800:]


def test_a_live_holder_is_never_taken_over(
    hand_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ETL_INCLUDE_DIR", "ETL_STATE_STORE", "ETL_STATE_DB"):
        monkeypatch.setenv(name, hand_run["env"][name])
    SqliteLeaseStore(hand_run["state"]).acquire("oo", "etl_oo/scheduled__1", 600)
    code, out, err = lease_cli(capsys, "--take-over-dead")
    assert (code, out) == (1, "")
    assert err == (
        "oo: refused to take over the lease held by etl_oo/scheduled__1: its holder is not a hand run of "
        "etlctl (an orchestrated run): wait for it or for the expiry\n"
    )
    assert SqliteLeaseStore(hand_run["state"]).holder("oo") is not None


# -- usage ----------------------------------------------------------------------------------------
def test_every_option_has_help_text() -> None:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    for name, command in sub.choices.items():  # type: ignore[attr-defined]
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"etlctl {name} {'/'.join(action.option_strings)} has no help text"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run-stage", "--entity", "de", "--stage", "extract", "--run-id", "r", "--interval-start", "noon",
          "--interval-end", "2026-01-02T00:00:00Z"],
         "etlctl run-stage: error: argument --interval-start: 'noon' is not an ISO 8601 timestamp"),
        (["run-stage", "--entity", "de", "--stage", "extrakt"], "etlctl run-stage: error: argument --stage: invalid choice"),
        (["lease"], "etlctl lease: error: the following arguments are required: --entity"),
        (["runs", "--entity", "de", "--since", "soon"], "etlctl runs: error: argument --since: 'soon' is not"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2_naming_the_flag(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(expected)


def test_an_unknown_entity_for_the_lease_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lease", "--entity", "fr"]) == 2
    assert capsys.readouterr().err.startswith("etlctl lease: error: --entity 'fr': no such entity (no ")
