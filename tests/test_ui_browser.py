"""The Airflow 3 UI in a real, headless browser, against ``make airflow``'s four processes.

Debian's Chromium (``/usr/bin/chromium``, the apt package ``chromium``), driven by Playwright, logs in with
SimpleAuthManager, finds the entity DAGs, unpauses ``etl_de`` with the UI toggle, triggers it from the
trigger dialog, reads every task's state from the run page, then creates a three-interval backfill
through the dialog's Backfill form and checks that its runs went one at a time. The REST API the UI uses
(``/api/v2``, JWT from ``/auth/token``) confirms what the page shows. Screenshots go to
``.test-artifacts/ui/``.

Playwright is only the driver: the test never launches (nor downloads) a browser of Playwright's own. Without
``/usr/bin/chromium`` it is skipped, and under ``CI=true`` a missing Chromium or Playwright is a failure.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from deploy.local.airflow_local import LocalAirflow, expected_dag_ids, local_airflow

from entity_etl.config.loader import load_entities
from support.entity_files import ROOT
from support.servers import require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.slow

#: Debian's package, and the only browser the test launches (never one Playwright downloads).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ARTIFACTS = ROOT / ".test-artifacts" / "ui"
DAG_ID = "etl_de"
# A manual run for the demo's own interval [2026-11-01, 2026-11-02): the sample source has rows there.
TRIGGER_LOGICAL_DATE = ("2026/11/02", "00:00")
# Backfill logical dates 2026-11-03, -04 and -05 (both ends included): three daily intervals, none of
# them the manual run's, so "missing runs only" creates exactly three.
BACKFILL_FROM = ("2026/11/03", "00:00")
BACKFILL_TO = ("2026/11/05", "00:00")
RUN_TIMEOUT_S = 240
TERMINAL = {"success", "failed"}


def _playwright_or_fail() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is missing: uv sync --frozen --all-extras (it is in the dev group)")
    require(
        CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing or not executable: apt-get install -y chromium (Debian's package; the test"
        " never uses a browser Playwright downloads)",
    )
    return sync_playwright


def expected_task_ids(entity: str) -> list[str]:
    """The DAG's tasks in order: the lease setup, the entity file's stages, publish and the lease teardown."""
    config = load_entities(ROOT / "include" / "entities", ROOT / "include" / "sql").entities[entity]
    return ["acquire_lease", *config.stages, "publish_loaded", "release_lease"]


@dataclass
class RunWatcher:
    """Polls the DAG's running runs every half second while the tests run: how many ran at once, and which."""

    airflow: LocalAirflow
    dag_id: str
    interval_s: float = 0.5
    max_running: int = 0
    seen_running: set[str] = field(default_factory=set)
    overlaps: list[list[str]] = field(default_factory=list)
    polls: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.airflow.api(f"dags/{self.dag_id}/dagRuns?state=running&limit=100")
            except OSError as exc:  # a late answer from a busy server: note it, keep polling
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                running = sorted(r["dag_run_id"] for r in answer["dag_runs"])
                self.polls += 1
                self.seen_running.update(running)
                self.max_running = max(self.max_running, len(running))
                if len(running) > 1:
                    self.overlaps.append(running)
            self._stop.wait(self.interval_s)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    # No scheduled runs: only what the tests trigger runs, so the run counts below are exact.
    with local_airflow(
        tmp_path_factory.mktemp("airflow-local"), extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    ) as server:
        try:
            yield server
        finally:
            # The four components' logs next to the screenshots: what CI keeps when a test fails.
            shutil.copytree(server.log_dir, ARTIFACTS / "airflow-logs", dirs_exist_ok=True)


@pytest.fixture(scope="module")
def watcher(airflow: LocalAirflow) -> Iterator[RunWatcher]:
    w = RunWatcher(airflow, DAG_ID)
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    sync_playwright = _playwright_or_fail()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("failed-*.png"):  # the named screenshots are overwritten; old failures go
        stale.unlink(missing_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, airflow: LocalAirflow, watcher: RunWatcher) -> Iterator[Page]:
    """One logged-in tab for the module (the UI keeps its JWT in a cookie)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="UTC")
    context.set_default_timeout(30_000)
    tab = context.new_page()
    tab.goto(airflow.url)
    tab.get_by_label("Username").fill(airflow.username)
    tab.get_by_label("Password").fill(airflow.password)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(f"{airflow.url}/", timeout=30_000)
    yield tab
    context.close()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A full-page screenshot of the tab when a test fails (its call report is logged before teardown)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and "page" in request.fixturenames:
        tab: Page = request.getfixturevalue("page")
        tab.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"), full_page=True)


_T0 = time.monotonic()


def step(message: str) -> None:
    """A timestamped progress line: pytest shows them with a failure (or with -s)."""
    print(f"[ui {time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; a request that fails on the way is retried."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:  # URLError, HTTPError, TimeoutError: the server was busy, ask again
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last!r})")


def runs(airflow: LocalAirflow) -> list[dict[str, Any]]:
    return list(airflow.api(f"dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"])


def task_states(airflow: LocalAirflow, run_id: str) -> dict[str, str | None]:
    quoted = urllib.parse.quote(run_id, safe="")
    answer = airflow.api(f"dags/{DAG_ID}/dagRuns/{quoted}/taskInstances?limit=100")
    return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}


def trigger_dialog(page: Page) -> Locator:
    """The Trigger Dag modal. Not ``get_by_role("dialog")`` alone: a date-time picker's popover is a
    ``role=dialog`` too, and stays in the page (closed) once it has been opened."""
    return page.locator("[role=dialog][data-scope=dialog][data-part=content]")


def set_datetime(page: Page, field: Locator, date: str, time_of_day: str) -> None:
    """Fill one of the UI's date-time pickers: its popover has a YYYY/MM/DD and an HH:mm box."""
    field.click()
    popover = page.locator("[data-scope=popover][data-part=content][data-state=open]")
    popover.get_by_placeholder("YYYY/MM/DD").fill(date)
    popover.get_by_placeholder("HH:mm").fill(time_of_day)
    page.keyboard.press("Escape")  # closes the popover only; the dialog stays open
    popover.wait_for(state="hidden")


# One snapshot of the run page's task table (task → state text), read in a single call: the React table
# re-renders while its queries refresh, so row-by-row reads can race a re-render.
_TASK_TABLE_JS = """rows => rows.map(row => [
    row.querySelector('[data-testid=table-cell-task_display_name]')?.innerText.trim(),
    row.querySelector('[data-testid=table-cell-state]')?.innerText.trim(),
])"""


def task_table(page: Page) -> dict[str, str]:
    return dict(page.get_by_test_id("table-list").locator("tbody tr").evaluate_all(_TASK_TABLE_JS))


def until_shown(read: Callable[[], Any], want: Any, timeout: float) -> Any:
    """Read the page until it shows ``want`` (it loads and refreshes asynchronously); return the last read."""
    deadline = time.monotonic() + timeout
    seen = read()
    while seen != want and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = read()
    return seen


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_login_shows_the_entity_dags(page: Page, airflow: LocalAirflow) -> None:
    step("logged in; the DAG list")
    page.goto(f"{airflow.url}/dags")
    dag_ids = expected_dag_ids()
    assert {"etl_de", "etl_jp", "etl_br"} <= set(dag_ids)
    for dag_id in dag_ids:
        page.get_by_role("link", name=dag_id, exact=True).wait_for()
    page.screenshot(path=str(ARTIFACTS / "01-dags.png"), full_page=True)
    assert not airflow.api("importErrors")["import_errors"]


def test_trigger_from_the_ui_runs_every_stage(page: Page, airflow: LocalAirflow, watcher: RunWatcher) -> None:
    before = {r["dag_run_id"] for r in runs(airflow)}
    step(f"{DAG_ID}: unpause with the toggle")
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    toggle = page.get_by_test_id("toggle-pause")
    toggle.wait_for()
    if toggle.get_attribute("data-state") != "checked":  # paused at creation: switch it on
        toggle.click()
    wait_for(lambda: not airflow.api(f"dags/{DAG_ID}")["is_paused"], 30, f"{DAG_ID} unpaused by the UI toggle")

    step(f"{DAG_ID}: trigger a single run")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = trigger_dialog(page)
    dialog.get_by_text("Single Run", exact=True).click()
    set_datetime(page, dialog.get_by_test_id("datetime-input").first, *TRIGGER_LOGICAL_DATE)
    dialog.get_by_test_id("trigger-dag-submit").click()
    dialog.wait_for(state="hidden")

    new = wait_for(lambda: [r for r in runs(airflow) if r["dag_run_id"] not in before], 30, "the run the UI triggered")
    assert len(new) == 1, new
    run = new[0]
    assert run["run_type"] == "manual"
    assert _parse(run["data_interval_start"]) == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert _parse(run["data_interval_end"]) == dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    run_id = run["dag_run_id"]
    step(f"{run_id}: wait until it finishes")

    final = wait_for(
        lambda: (
            (r := airflow.api(f"dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"))["state"] in TERMINAL
            and r
        ),
        RUN_TIMEOUT_S,
        f"run {run_id} to finish",
        interval=2,
    )
    states = task_states(airflow, run_id)
    expected = expected_task_ids("de")
    assert final["state"] == "success", states
    assert states == dict.fromkeys(expected, "success")

    # The same, as the run page shows it: one row per task, each with a "Success" badge.
    step(f"{run_id}: {final['state']}; read the run page")
    page.goto(f"{airflow.url}/dags/{DAG_ID}/runs/{run_id}")
    want = dict.fromkeys(expected, "Success")
    shown = until_shown(lambda: task_table(page), want, 30)
    assert shown == want, shown
    page.screenshot(path=str(ARTIFACTS / "02-triggered-run.png"), full_page=True)
    assert run_id in watcher.seen_running, "the watcher never saw the triggered run running"


def test_backfill_from_the_ui_runs_three_intervals_one_at_a_time(
    page: Page, airflow: LocalAirflow, watcher: RunWatcher
) -> None:
    # A run left over from an earlier test would overlap the backfill's runs (Airflow 3 gives backfills
    # their own run limit; the entity lease keeps their stages apart, not their DAG runs): start clean.
    wait_for(lambda: all(r["state"] in TERMINAL for r in runs(airflow)), 180, f"no run of {DAG_ID} still going")
    step(f"{DAG_ID}: backfill form")
    page.goto(f"{airflow.url}/dags/{DAG_ID}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = trigger_dialog(page)
    dialog.get_by_text("Backfill", exact=True).click()
    pickers = dialog.get_by_test_id("datetime-input")
    set_datetime(page, pickers.nth(0), *BACKFILL_FROM)
    set_datetime(page, pickers.nth(1), *BACKFILL_TO)
    dialog.get_by_text("Missing Runs", exact=True).click()
    dialog.locator("input[name=max_active_runs]").fill("1")
    # The dialog's dry run (POST /api/v2/backfills/dry_run) counts the runs before anything is created.
    dialog.get_by_text("3 runs will be triggered").wait_for()
    page.screenshot(path=str(ARTIFACTS / "03-backfill-form.png"))
    dialog.get_by_role("button", name="Run Backfill").click()
    dialog.wait_for(state="hidden")

    step("backfill submitted")
    backfills = wait_for(
        lambda: airflow.api(f"backfills?dag_id={DAG_ID}")["backfills"], 30, "the backfill the UI created"
    )
    assert len(backfills) == 1, backfills
    backfill = backfills[0]
    assert backfill["max_active_runs"] == 1
    assert airflow.api(f"dags/{DAG_ID}/details")["max_active_runs"] == 1  # the DAG's own limit, for the other runs
    assert backfill["reprocess_behavior"] == "none"

    def backfill_runs() -> list[dict[str, Any]]:
        return [r for r in runs(airflow) if r["run_type"] == "backfill"]

    def all_done() -> list[dict[str, Any]]:
        found = backfill_runs()
        return found if len(found) == 3 and all(r["state"] in TERMINAL for r in found) else []

    step(f"backfill {backfill['id']}: wait for its three runs")
    done = wait_for(all_done, 3 * RUN_TIMEOUT_S, "three backfill runs to finish", interval=2)
    assert sorted(_parse(r["logical_date"]).date() for r in done) == [
        dt.date(2026, 11, 3),
        dt.date(2026, 11, 4),
        dt.date(2026, 11, 5),
    ]
    assert [r["state"] for r in done] == ["success"] * 3, {
        r["dag_run_id"]: task_states(airflow, r["dag_run_id"]) for r in done
    }
    for r in done:
        assert set(task_states(airflow, r["dag_run_id"]).values()) == {"success"}

    # Never two runs at once: no poll saw two running, and no two runs' [start, end] windows overlap.
    assert {r["dag_run_id"] for r in done} <= watcher.seen_running, "the watcher missed a backfill run"
    assert watcher.max_running == 1, f"runs of {DAG_ID} running at the same time: {watcher.overlaps[:5]}"
    assert watcher.polls > 20, f"too few polls to tell ({watcher.polls}; errors: {watcher.errors[-3:]})"
    windows = sorted((_parse(r["start_date"]), _parse(r["end_date"]), r["dag_run_id"]) for r in runs(airflow))
    for (_, end, earlier), (start, _, later) in itertools.pairwise(windows):
        assert end <= start, f"{earlier} ended at {end}, after {later} started at {start}"

    step(f"backfill done; the watcher polled {watcher.polls} times, at most {watcher.max_running} running")
    page.goto(f"{airflow.url}/dags/{DAG_ID}/runs")
    page.get_by_text("Backfill").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "04-backfill-runs.png"), full_page=True)


def _unpause(airflow: LocalAirflow, dag_id: str) -> None:
    """PATCH /api/v2/dags/{dag_id} (the REST client of airflow_local only GETs and POSTs)."""
    request = urllib.request.Request(
        f"{airflow.url}/api/v2/dags/{dag_id}",
        data=json.dumps({"is_paused": False}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {airflow.token()}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _run_for_demo_day(airflow: LocalAirflow, dag_id: str, run_id: str) -> str:
    """A new run of ``dag_id``, at the demo's logical date, or at the day after the backfill's last when an
    earlier case has a run there (one run per logical date: the API answers 409 to a second). The new
    run starts last, so it is the one the Entities page shows as the last run."""
    for logical_date in ("2026-11-02T00:00:00Z", "2026-11-06T00:00:00Z"):
        try:
            airflow.api(f"dags/{dag_id}/dagRuns", body={"dag_run_id": run_id, "logical_date": logical_date})
            return run_id
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
    raise AssertionError(f"{dag_id}: runs exist at both logical dates this case uses")


def test_entities_page_shows_the_demo_entities_with_their_last_runs(page: Page, airflow: LocalAirflow) -> None:
    """Each demo entity runs once (API trigger, the demo's interval); its run gets the summary as its
    note, and the Entities page (the plugin's view, /plugin/entities) shows its last run's figures."""
    from entity_etl.runtime.run_store import RUN, SqliteRunStore
    from entity_etl.runtime.run_summary import stored_summary

    entities = ["br", "de", "jp"]
    wait_for(lambda: all(r["state"] in TERMINAL for r in runs(airflow)), 180, f"no run of {DAG_ID} still going")
    run_ids = {}
    for entity in entities:
        _unpause(airflow, f"etl_{entity}")
        run_ids[entity] = _run_for_demo_day(airflow, f"etl_{entity}", f"entities_page__{entity}")
    step("entities page: three runs triggered")
    finished = {
        entity: wait_for(
            lambda e=entity: (r := airflow.api(f"dags/etl_{e}/dagRuns/{run_ids[e]}"))["state"] in TERMINAL and r,
            3 * RUN_TIMEOUT_S,
            f"run {run_ids[entity]} to finish",
            interval=2,
        )
        for entity in entities
    }
    assert {e: r["state"] for e, r in finished.items()} == dict.fromkeys(entities, "success")

    store = SqliteRunStore(Path(airflow.env["ETL_STATE_DB"]))
    summaries = {e: stored_summary(store.get(e, run_ids[e], RUN)) for e in entities}
    for entity, summary in summaries.items():
        # A figure the stages recorded (jp's weekly interval before the demo day may load none).
        assert summary is not None and isinstance(summary["rows_loaded"], int), summary
        # The DAG-run note, set by the plugin's listener when the run succeeded.
        note = wait_for(
            lambda e=entity: airflow.api(f"dags/etl_{e}/dagRuns/{run_ids[e]}")["note"], 30, f"{entity}'s run note"
        )
        assert note.startswith(f"**{entity}: run succeeded**"), note
        assert f"- rows loaded: {summary['rows_loaded']:,}" in note.splitlines(), note
        run = finished[entity]
        interval = f"{_parse(run['data_interval_start']).isoformat()} → {_parse(run['data_interval_end']).isoformat()}"
        assert f"- interval: {interval}" in note.splitlines(), note

    step("entities page: open it from the navigation")
    page.goto(f"{airflow.url}/plugin/entities")
    frame = page.frame_locator("iframe")
    for entity in entities:
        row = frame.locator(f'tr[data-entity="{entity}"]')
        row.wait_for()
        assert row.locator("td.status").inner_text() == "succeeded"
        assert row.locator("td.rows-loaded").inner_text() == f"{summaries[entity]['rows_loaded']:,}"
        run = finished[entity]
        interval = f"{_parse(run['data_interval_start']).isoformat()} → {_parse(run['data_interval_end']).isoformat()}"
        assert row.locator("td").nth(4).inner_text() == interval
        assert row.locator("svg.spark polyline, svg.spark circle").count() >= 2
    page.screenshot(path=str(ARTIFACTS / "05-entities-page.png"), full_page=True)
