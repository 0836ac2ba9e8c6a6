"""``etlctl runs --entity E [--since DATE]``: the audit table, read from the run store the deployment
settings name: the embedded SQLite file, and DynamoDB on a real moto server (a Query of the
``by_entity_started`` index; a Scan fails the test)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from entity_etl.cli import main
from entity_etl.runtime.run_store import (
    Checkpoint,
    DynamoRunStore,
    RunStore,
    SqliteRunStore,
    StageRecord,
    default_state_path,
)

COLUMNS = ["run_id", "stage", "status", "try", "started_at", "ended_at", "rows_out", "job", "error"]
JOB = "7a3c1e52-0d4b-4c55-9f0e-3b1f2a9c8d10"
CHILD_JOB = "b41d0c77-5e2a-4f8b-a1c3-6d9e0f7a2b58:3"  # an array child's AWS_BATCH_JOB_ID
ERROR = "de: extract: source query failed:\n  (2013, 'Lost connection to server during query')"


class ScanForbidden(AssertionError):
    pass


def forbid_scan(**_: Any) -> None:
    raise ScanForbidden("etlctl runs called DynamoDB Scan: it must Query the by_entity_started index")


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunStore]:
    """The store ``etlctl runs`` opens from the environment, for the test to write records to."""
    if request.param == "sqlite":
        monkeypatch.setenv("ETL_STATE_STORE", "sqlite")  # ETL_STATE_DB: the test's own file (conftest)
        yield SqliteRunStore(default_state_path())
        return
    request.getfixturevalue("aws")
    monkeypatch.setenv("ETL_STATE_STORE", "dynamodb")
    monkeypatch.setenv("ETL_RUNS_TABLE", "etl-runs-audit")
    # etlctl makes its client with boto3.client(): clients of a fresh default session inherit its
    # event hooks, so a Scan by the command fails before it is sent.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.Scan", forbid_scan)
    client = boto3.client("dynamodb")
    client.create_table(**DynamoRunStore.table_definition("etl-runs-audit"))
    with pytest.raises(ScanForbidden):  # a client made the way open_run_store() makes its own
        client.scan(TableName="etl-runs-audit")
    yield DynamoRunStore("etl-runs-audit", client)


def write_runs(store: RunStore) -> None:
    """Two runs of ``de`` (one succeeded on Batch, one whose stages failed) and one of ``jp``."""
    r1, r2 = "scheduled__2026-10-31", "scheduled__2026-11-01"
    store.put(StageRecord("de", r1, "_run", "running", started_at="2026-10-31T22:00:00.000+00:00"))
    store.put(
        StageRecord(
            "de",
            r1,
            "extract",
            "succeeded",
            started_at="2026-10-31T22:01:00.000+00:00",
            ended_at="2026-10-31T22:09:30.000+00:00",
            stats={"rows_out": 1234567},
            batch_job_id=JOB,
        )
    )
    store.put(
        StageRecord(
            "de",
            r1,
            "_run",
            "succeeded",
            started_at="2026-10-31T22:00:00.000+00:00",
            ended_at="2026-10-31T22:30:00.000+00:00",
        )
    )
    store.put(
        StageRecord("de", r2, "extract", "failed", attempt=2, started_at="2026-11-01T08:00:00.250+00:00", error=ERROR)
    )
    store.put(
        StageRecord(
            "de",
            r2,
            "load_staging",
            "failed",
            started_at="2026-11-01T08:20:00.000+00:00",
            ended_at="2026-11-01T08:21:00.000+00:00",
            batch_job_id=CHILD_JOB,
            error="x" * 200,
        )
    )
    store.put_checkpoint(Checkpoint("de", r2, "extract", "p00", "plan"))  # a checkpoint is not a record
    store.put(StageRecord("jp", r2, "extract", "running", started_at="2026-11-01T09:00:00.000+00:00"))


def table(out: str) -> list[dict[str, str]]:
    """The printed table as rows of ``{column: cell}``, cut at the ruler's column bounds."""
    header, ruler, *lines = out.rstrip("\n").split("\n")
    assert header.split() == COLUMNS
    bounds, at = [], 0
    for dashes in ruler.split("  "):
        assert set(dashes) == {"-"}, ruler
        bounds.append((at, at + len(dashes)))
        at += len(dashes) + 2
    assert [header[a:b].strip() for a, b in bounds] == COLUMNS
    return [{c: line[a:b].strip() for c, (a, b) in zip(COLUMNS, bounds, strict=True)} for line in lines]


def runs(capsys: pytest.CaptureFixture[str], *args: str, store: RunStore | None = None) -> str:
    """The output after its header line, which names the store the stages write (``store``)."""
    capsys.readouterr()
    assert main(["runs", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    header, _, rest = captured.out.partition("\n")
    if isinstance(store, SqliteRunStore):
        assert header == f"run store: sqlite {store.path}"
    elif isinstance(store, DynamoRunStore):
        assert header == f"run store: dynamodb table {store.table_name}"
    else:
        assert header.startswith("run store: ")
    return rest


def test_runs_of_one_entity(store: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(store)
    rows = table(runs(capsys, "--entity", "de", store=store))
    assert [(r["run_id"], r["stage"], r["status"], r["try"]) for r in rows] == [
        ("scheduled__2026-10-31", "_run", "succeeded", "1"),
        ("scheduled__2026-10-31", "extract", "succeeded", "1"),
        ("scheduled__2026-11-01", "extract", "failed", "2"),
        ("scheduled__2026-11-01", "load_staging", "failed", "1"),
    ]  # jp's run and the checkpoint are not listed
    run, extract, failed, staging = rows
    assert (run["started_at"], run["ended_at"], run["rows_out"], run["job"]) == (
        "2026-10-31T22:00:00",
        "2026-10-31T22:30:00",
        "",
        "",
    )
    assert (extract["rows_out"], extract["job"], extract["error"]) == ("1,234,567", JOB, "")
    assert extract["ended_at"] == "2026-10-31T22:09:30"
    # A failed stage: its error on one line (the record's holds a line break), and no end yet.
    assert failed["error"] == "de: extract: source query failed: (2013, 'Lost connection t…"
    assert len(failed["error"]) == 60 and failed["ended_at"] == "" and failed["job"] == ""
    assert staging["job"] == CHILD_JOB and staging["error"] == "x" * 59 + "…"


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2026-11-01", ["extract", "load_staging"]),
        ("2026-11-01T08:00:00.250Z", ["extract", "load_staging"]),  # at the start itself: included
        ("2026-11-01T09:00:00.250+01:00", ["extract", "load_staging"]),  # the same instant, another offset
        ("2026-11-01T08:00:00.251", ["load_staging"]),  # no offset: UTC
        ("2026-10-31T22:01", ["extract", "extract", "load_staging"]),
    ],
)
def test_since_filters_by_start(
    store: RunStore, capsys: pytest.CaptureFixture[str], since: str, expected: list[str]
) -> None:
    write_runs(store)
    rows = table(runs(capsys, "--entity", "de", "--since", since, store=store))
    assert [r["stage"] for r in rows] == expected


def test_nothing_to_list(store: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(store)
    assert runs(capsys, "--entity", "br", store=store) == "no run records\n"  # an entity with no runs yet
    assert runs(capsys, "--entity", "de", "--since", "2026-11-02", store=store) == "no run records\n"


def test_an_unknown_entity_is_a_usage_error(store: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(store)
    capsys.readouterr()
    assert main(["runs", "--entity", "fr"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("etlctl runs: error: --entity 'fr': no such entity (no ")
    assert f"fr.yaml and no records in run store {store.describe()})" in captured.err


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-11-01T25:00", "01/11/2026"])
def test_a_bad_since_is_a_clear_error(store: RunStore, capsys: pytest.CaptureFixture[str], since: str) -> None:
    write_runs(store)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["runs", "--entity", "de", "--since", since])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == (
        f"etlctl runs: error: argument --since: {since!r} is not an ISO date or timestamp "
        "(e.g. 2026-11-01 or 2026-11-01T08:00:00+00:00)"
    )


def test_the_command_line_exits_non_zero_on_a_bad_since() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "entity_etl.cli", "runs", "--entity", "de", "--since", "last tuesday"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "etlctl runs: error: argument --since: 'last tuesday' is not an ISO date or timestamp" in proc.stderr
    assert "Traceback" not in proc.stderr
