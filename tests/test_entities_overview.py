"""The Entities page (entity_etl/ui) through FastAPI's TestClient, on real run records in a SQLite file
and in a moto DynamoDB table (every DynamoDB call counted: Query only, never Scan)."""

from __future__ import annotations

import collections
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from entity_etl.runtime import run_records
from entity_etl.runtime.run_store import DynamoRunStore, RunStore, SqliteRunStore
from entity_etl.ui.app import create_app
from entity_etl.ui.entity_list import EntityInfo, entities
from support.entity_files import ROOT

STAGES = ["extract", "load_staging", "dedupe", "load_target"]
INFOS = [
    EntityInfo("br", "etl_br", "@daily"),
    EntityInfo("de", "etl_de", "0 2 * * *"),
    EntityInfo("jp", "etl_jp", "manual only"),
]


@pytest.fixture(params=["sqlite", pytest.param("dynamodb", marks=pytest.mark.moto)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RunStore, collections.Counter[str]]]:
    calls: collections.Counter[str] = collections.Counter()
    if request.param == "sqlite":
        yield SqliteRunStore(tmp_path / "state.db"), calls
        return
    request.getfixturevalue("aws")
    client = boto3.client("dynamodb")
    client.create_table(**DynamoRunStore.table_definition("runs"))

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    client.meta.events.register("before-call.dynamodb.*", count)
    yield DynamoRunStore("runs", client), calls


def _run(store: RunStore, entity: str, day: int, loaded: int | None, *, fail: bool = False) -> str:
    """One run through the real record writers: open, four stages, close (with its interval)."""
    run_id = f"scheduled__2026-11-{day:02d}T00:00:00+00:00"
    started = dt.datetime(2026, 11, day + 1, 0, 5, tzinfo=dt.UTC)
    run_records.open_run(store, entity, run_id, attempt=1)
    for stage in STAGES:
        failed = fail and stage == "load_target"
        stats = None if failed else {"rows_out": loaded or 0, "details": {"target_rows": 10 * (loaded or 0)}}
        run_records.start_stage(store, entity, run_id, stage, attempt=1, started=started, batch_job_id="")
        run_records.finish_stage(
            store, entity, run_id, stage, attempt=1, started=started, stats=stats, error="boom", batch_job_id=""
        )
    interval = (f"2026-11-{day:02d}T00:00:00+00:00", f"2026-11-{day + 1:02d}T00:00:00+00:00")
    run_records.close_run(store, entity, run_id, STAGES, interval=interval)
    return run_id


def _client(store: RunStore) -> TestClient:
    return TestClient(create_app(store=lambda: store, entity_list=lambda: INFOS, require_login=False))


def test_the_page_lists_every_entity_with_its_last_run_and_trend(
    store: tuple[RunStore, collections.Counter[str]],
) -> None:
    run_store, calls = store
    for day, loaded in enumerate([100, 250, 175], start=1):
        _run(run_store, "de", day, loaded)
    last_br = _run(run_store, "br", 1, 40, fail=True)
    calls.clear()

    answer = _client(run_store).get("/api/entities")
    assert answer.status_code == 200
    rows = {row["entity"]: row for row in answer.json()["entities"]}
    assert list(rows) == ["br", "de", "jp"]
    de = rows["de"]
    assert de["schedule"] == "0 2 * * *"
    assert de["last_run_id"] == "scheduled__2026-11-03T00:00:00+00:00"
    assert (de["status"], de["rows_loaded"]) == ("succeeded", 175)
    assert (de["interval_start"], de["interval_end"]) == ("2026-11-03T00:00:00+00:00", "2026-11-04T00:00:00+00:00")
    assert de["rows_trend"] == [100, 250, 175]  # oldest first
    assert len(de["duration_trend"]) == 3 and all(d is not None and d >= 0 for d in de["duration_trend"])
    assert de["duration_s"] == de["duration_trend"][-1]
    br = rows["br"]
    assert (br["last_run_id"], br["status"], br["rows_loaded"]) == (last_br, "failed", None)
    assert rows["jp"]["status"] == "never run" and rows["jp"]["rows_trend"] == []
    if isinstance(run_store, DynamoRunStore):  # one Query per entity, nothing else
        assert calls == {"Query": 3}, calls

    page = _client(run_store).get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    de_row = re.search(r'<tr data-entity="de">(.*?)</tr>', html, re.S)
    assert de_row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", de_row.group(1), re.S)
    assert 'href="../dags/etl_de"' in cells[0]
    opened = run_store.get("de", de["last_run_id"])
    assert opened is not None and de["last_started"] == opened.started_at  # when the run's lease was taken
    assert cells[1:4] == ["0 2 * * *", opened.started_at[:19].replace("T", " "), "succeeded"]
    assert cells[4] == "2026-11-03T00:00:00+00:00 → 2026-11-04T00:00:00+00:00"
    assert cells[5] == "175"
    assert cells[7].count("<polyline") == 1 and len(cells[7].split('points="')[1].split('"')[0].split()) == 3
    assert f"run store: {run_store.describe()}" in html


def test_the_trend_is_the_last_twenty_runs(store: tuple[RunStore, collections.Counter[str]]) -> None:
    run_store, calls = store
    for day in range(1, 26):
        _run(run_store, "de", day, day * 10)
    calls.clear()
    rows = {r["entity"]: r for r in _client(run_store).get("/api/entities").json()["entities"]}
    assert rows["de"]["rows_trend"] == [day * 10 for day in range(6, 26)]
    assert rows["de"]["last_run_id"] == "scheduled__2026-11-25T00:00:00+00:00"
    if isinstance(run_store, DynamoRunStore):
        assert set(calls) == {"Query"} and calls["Query"] >= 3, calls


def test_entity_names_are_escaped(tmp_path: Path) -> None:
    run_store = SqliteRunStore(tmp_path / "state.db")
    odd = [EntityInfo("x<script>", "etl_x<script>", "@daily", problem="x.yaml: schedule: <b>bad</b>")]
    html = TestClient(create_app(store=lambda: run_store, entity_list=lambda: odd, require_login=False)).get("/").text
    assert "<script>" not in html and "<b>bad</b>" not in html
    assert "x&lt;script&gt;" in html and "&lt;b&gt;bad&lt;/b&gt;" in html


def test_the_entity_list_is_the_demo_entity_files() -> None:
    found = entities(ROOT / "include" / "entities", ROOT / "include" / "sql")
    assert {"br", "de", "jp"} <= {e.entity for e in found}
    assert all(e.dag_id == f"etl_{e.entity}" and e.schedule for e in found)
    assert entities(ROOT / "include" / "entities", ROOT / "include" / "sql") is found  # no file changed: cached


def test_behind_airflow_the_page_needs_a_login(tmp_path: Path) -> None:
    run_store = SqliteRunStore(tmp_path / "state.db")
    app = create_app(store=lambda: run_store, entity_list=lambda: INFOS)
    assert TestClient(app).get("/").status_code == 401  # no JWT cookie, no bearer token


def test_on_sqlite_the_last_runs_come_from_the_run_record_index(tmp_path: Path) -> None:
    """The page's query reads an entity's run records only (the partial index), never its stage records."""
    import sqlite3

    from entity_etl.ui.run_history import _SQLITE_LAST_RUNS

    run_store = SqliteRunStore(tmp_path / "state.db")
    _run(run_store, "de", 1, 10)
    with sqlite3.connect(run_store.path) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {_SQLITE_LAST_RUNS}", ("de", 20)))
    assert "USING INDEX etl_runs_last_runs" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # newest first straight from the index, no sort
