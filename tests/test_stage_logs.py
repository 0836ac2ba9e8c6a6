"""What a stage logs, from real runs through ``run_stage`` and ``etlctl run-stage`` on SQLite.

Each stage with a chunk loop says its plan (chunks to do, resumed chunks, the source interval), then
a progress line at most every 10 s or per chunk (chunk i/n, rows, MB/s, ETA), and every stage ends
with the table ``etlctl run-stage`` prints. Times are ISO 8601 UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
from pathlib import Path

import pytest

from entity_etl.runtime import failpoints, progress
from entity_etl.runtime.stages import StageError, run_stage
from entity_etl.runtime.stats import format_table
from support.entity_files import make_include, write_entity
from support.pipeline import END, START, context, etlctl_run_stage

ENTITY = """\
entity: acme
schedule: "@daily"
start_date: 2026-01-01
source: {conn_id: acme_src, extract_sql: acme/extract.sql, chunk_rows: 1000, fetch_rows: 400, chunk_key: id}
staging: {table: stg_acme}
target: {conn_id: acme_tgt, table: acme_company, chunk_rows: 1000}
columns:
  - {name: id, type: string(20)}
  - {name: label, type: text}
  - {name: changed_at, type: datetime}
dedupe: {key: [id], keep: newest, order_by: changed_at}
"""
SQL = (
    "SELECT id, label, changed_at FROM src WHERE changed_at >= :data_interval_start AND changed_at < :data_interval_end"
)
ROWS = 4500  # ids K0000..K4499: 4 cut points at 1000 rows, 5 key-range chunks, and the NULL-key chunk
STAGES = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
LOGGER = "entity_etl.runtime.stages"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
PROGRESS = re.compile(
    rf"^acme: (?P<stage>\w+): chunk (?P<i>\d+)/(?P<n>\d+) done: (?P<rows>[\d,]+) rows, "
    rf"(?:(?P<mb>\d+\.\d) MB, (?P<mbs>\d+\.\d) MB/s, )?[\d,]+ rows/s, elapsed \w+, ETA (?P<eta>{ISO}) \(in \w+\)$"
)
INTERVAL = "source interval 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z"


@pytest.fixture
def include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    include = make_include(tmp_path)
    write_entity(include, "acme", ENTITY, SQL)
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, label TEXT, changed_at TEXT)")
        rows = [(f"K{i:04d}", f"label {i}", f"2026-01-01 {i % 24:02d}:00:00") for i in range(ROWS)]
        conn.executemany("INSERT INTO src VALUES (?, ?, ?)", rows)
    monkeypatch.setenv("AIRFLOW_CONN_ACME_SRC", json.dumps({"conn_type": "sqlite", "host": str(src)}))
    monkeypatch.setenv("AIRFLOW_CONN_ACME_TGT", json.dumps({"conn_type": "sqlite", "host": str(tgt)}))
    monkeypatch.setenv("ETL_INCLUDE_DIR", str(include))
    return include


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]


def progress_lines(messages: list[str], stage: str) -> list[re.Match[str]]:
    matches = [PROGRESS.match(m) for m in messages]
    return [m for m in matches if m is not None and m["stage"] == stage]


def test_a_run_logs_each_stages_plan_every_chunk_and_its_table(
    include: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)  # a line per chunk, however fast it is
    ctx = context(include, "acme", tmp_path / "objects")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        stats = {stage: run_stage(ctx, stage) for stage in STAGES}
    messages = lines(caplog)

    assert f"acme: extract: plan: 6 chunk(s) to do, 0 resumed (done before), 6 in all; {INTERVAL}" in messages
    extract = progress_lines(messages, "extract")
    assert [(m["i"], m["n"]) for m in extract] == [(str(i), "6") for i in range(1, 7)]
    assert [int(m["rows"].replace(",", "")) for m in extract] == [1000, 2000, 3000, 4000, 4500, 4500]
    # MB is the gzip parts written so far, as the stage's bytes say at the end.
    assert float(extract[-1]["mb"]) == pytest.approx(stats["extract"].bytes / 1e6, abs=0.05)
    assert all(float(m["mbs"]) >= 0 for m in extract)

    # load_staging: one chunk per extract part (the NULL-key chunk wrote none).
    assert f"acme: load_staging: plan: 5 chunk(s) to do, 0 resumed (done before), 5 in all; {INTERVAL}" in messages
    assert [(m["i"], m["n"]) for m in progress_lines(messages, "load_staging")] == [(str(i), "5") for i in range(1, 6)]
    # load_target moves rows inside the database: rows and rows/s, no MB.
    assert f"acme: load_target: plan: 5 chunk(s) to do, 0 resumed (done before), 5 in all; {INTERVAL}" in messages
    target = progress_lines(messages, "load_target")
    assert [(m["i"], m["n"], m["mb"]) for m in target] == [(str(i), "5", None) for i in range(1, 6)]
    assert target[-1]["rows"] == "4,500"

    # Every stage ends with the table etlctl prints, after a line with its ISO 8601 times and attempt.
    for stage in STAGES:
        (end,) = [m for m in messages if m.startswith(f"acme: {stage}: finished at ")]
        head, table = end.split("\n", 1)
        assert re.fullmatch(
            rf"acme: {stage}: finished at {ISO}, run {re.escape(ctx.run_id)}, attempt 1 "
            rf"\(started at {ISO}, no earlier attempt\)",
            head,
        ), head
        assert table == format_table([stats[stage]])
    # An ETA is now or later (the clock of the ETA is UTC).
    eta = dt.datetime.strptime(extract[-1]["eta"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert eta >= dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=2)


def test_progress_lines_are_at_most_every_10_s_and_the_last_chunk(
    include: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the default 10 s, a run that takes less gives one progress line per stage: its last chunk."""
    ctx = context(include, "acme", tmp_path / "objects")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for stage in STAGES:
            run_stage(ctx, stage)
    messages = lines(caplog)
    assert [(m["i"], m["n"]) for m in progress_lines(messages, "extract")] == [("6", "6")]
    assert [(m["i"], m["n"]) for m in progress_lines(messages, "load_target")] == [("5", "5")]


def test_a_resumed_extract_says_how_many_chunks_it_resumed(
    include: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "PROGRESS_EVERY_S", 0.0)
    ctx = context(include, "acme", tmp_path / "objects")
    run_stage(ctx, "cleanup")
    monkeypatch.setenv(failpoints.ENV, "extract.part_uploaded=raise@3")  # chunks 1 and 2 are checkpointed
    failpoints.reload()
    with pytest.raises(StageError, match=r"fail point extract\.part_uploaded"):
        run_stage(ctx, "extract")
    monkeypatch.delenv(failpoints.ENV)
    failpoints.reload()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        run_stage(ctx, "extract")
    messages = lines(caplog)
    assert f"acme: extract: plan: 4 chunk(s) to do, 2 resumed (done before), 6 in all; {INTERVAL}" in messages
    assert any(
        re.fullmatch(
            rf"acme: extract: finished at {ISO}, run \S+, attempt 2 \(started at {ISO}, resumes its checkpoints\)",
            m.split("\n")[0],
        )
        for m in messages
    )
    # The count goes on from the resumed chunks; the rows are this attempt's.
    assert [(m["i"], m["n"], m["rows"]) for m in progress_lines(messages, "extract")] == [
        ("3", "6", "1,000"),
        ("4", "6", "2,000"),
        ("5", "6", "2,500"),
        ("6", "6", "2,500"),
    ]


def test_eta_and_rates_follow_the_pace_of_this_attempt(caplog: pytest.LogCaptureFixture) -> None:
    """A clock that moves 4 s per chunk: no line until 10 s have passed, then the rate and ETA of that pace."""
    ticks = iter([0.0, 0.0, 4.0, 8.0, 12.0, 16.0, 20.0])
    reporter = progress.Progress("acme: extract", clock=lambda: next(ticks))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        reporter.plan(5, resumed=1)
        for _ in range(5):
            reporter.chunk_done(1000, 2_000_000)
    messages = lines(caplog)
    assert messages[0] == "acme: extract: plan: 5 chunk(s) to do, 1 resumed (done before), 6 in all"
    # 12 s in, 3 chunks done here (4 of 6): 4 s a chunk, 2 to go, so 8 s; 6 MB in 12 s is 0.5 MB/s.
    assert re.fullmatch(
        rf"acme: extract: chunk 4/6 done: 3,000 rows, 6\.0 MB, 0\.5 MB/s, 250 rows/s, elapsed 12s, ETA {ISO} \(in 8s\)",
        messages[1],
    )
    assert re.fullmatch(rf"acme: extract: chunk 6/6 done: 5,000 rows, .* ETA {ISO} \(in 0s\)", messages[2])
    assert len(messages) == 3


def test_etlctl_run_stage_logs_at_info_with_iso_times_and_prints_the_table(include: Path, tmp_path: Path) -> None:
    store = tmp_path / "objects"
    for stage in ("cleanup", "extract"):
        proc = etlctl_run_stage("acme", stage, store, start=START, end=END)
        assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert any(
        re.fullmatch(rf"{stamp} INFO {LOGGER}: acme: extract: plan: 6 chunk\(s\) to do, 0 resumed .*; {INTERVAL}", line)
        for line in err
    ), err
    assert any(
        re.fullmatch(rf"{stamp} INFO {LOGGER}: acme: extract: chunk 6/6 done: 4,500 rows, .*", line) for line in err
    )
    stats = json.loads(proc.stdout)
    assert err[-1].split()[:3] == ["acme", "extract", "4,500"]  # the table's row closes the log
    assert stats["rows_out"] == 4500


def test_a_stage_refused_before_its_plan_says_only_its_error(include: Path, tmp_path: Path) -> None:
    """The one-line error of bad input stays one line at INFO: nothing is logged before a stage's plan."""
    proc = etlctl_run_stage("acme", "load_staging", tmp_path / "objects", force=True)  # no extract ran: no manifest
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("etlctl: error: acme: no finished extract for run 'r1' "), line
    assert proc.stdout == ""


def test_etl_log_level_warning_silences_the_progress_and_a_bad_level_is_one_line(include: Path, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "ETL_LOG_LEVEL": "WARNING"}
    proc = etlctl_run_stage("acme", "cleanup", tmp_path / "objects", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    proc = etlctl_run_stage("acme", "cleanup", tmp_path / "objects", env={**os.environ, "ETL_LOG_LEVEL": "chatty"})
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == "etlctl: error: ETL_LOG_LEVEL='CHATTY' is not a log level (DEBUG, INFO, WARNING, ERROR)"
    )
