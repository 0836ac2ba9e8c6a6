"""`make demo`'s driver, end to end through Airflow, twice: same target contents both times.

The survey part is checked against figures computed here from the demo's seeded traffic
(``demo/survey_traffic.py``), not against numbers copied from an earlier run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from demo.survey_traffic import DEMO_DAYS, plan_traffic

from support.entity_files import ROOT

pytestmark = pytest.mark.slow

CHECKSUM = re.compile(r"^\s+(company_\w+)\s+(\d+) rows\s+sha256:(\w+)$", re.M)
SURVEY_ROW = re.compile(
    r"^  (\d{4}-\d\d-\d\d)  (overall|queue)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(-?[\d.]+|-)\s+([\d.]+|-)$", re.M
)
CHART = re.compile(r"^demo: NPS chart .*sha256:(\w+)\):$", re.M)


def run_demo(demo_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ETL_", "AWS_"))}
    env["DEMO_DIR"] = str(demo_dir)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run_demo.py")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    demo_dir = tmp_path_factory.mktemp("demo") / "demo"
    return run_demo(demo_dir), run_demo(demo_dir), demo_dir


def test_demo_runs_every_entity_and_is_repeatable(demo_runs: tuple[str, str, Path]) -> None:
    first, second, _ = demo_runs
    for entity in ("de", "jp", "br"):
        assert re.search(rf"^etl_{entity} run \S+: success$", first, re.M), first
    # Per-stage statistics are printed as a table, for every stage of every entity.
    assert (
        len(re.findall(r"^(de|jp|br)\s+(cleanup|extract|load_staging|translate|dedupe|load_target)\s", first, re.M))
        == 6 + 5 + 5
    )
    assert "offline glossary (not machine translation)" in first
    dedupe = re.search(r"^de\s+dedupe\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", first, re.M)
    assert dedupe and int(dedupe.group(3).replace(",", "")) > 0, "the demo injects duplicates"
    checksums = CHECKSUM.findall(first)
    assert len(checksums) == 3 and all(int(n) > 0 for _, n, _ in checksums)
    assert CHECKSUM.findall(second) == checksums


def _pct(part: int, whole: int) -> str:
    # Half away from zero, as the README's NPS section says; by hand here, not through the package.
    return str((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _expected_rows() -> list[tuple[str, ...]]:
    """The daily table as the demo must print it, from the ratings the traffic plan stores."""
    rows = []
    for day, contacts in plan_traffic().items():
        rated = [c for c in contacts if c.surveyed and c.rating is not None]
        groups = [("overall", "-", rated)]
        groups += [("queue", q, [c for c in rated if c.queue == q]) for q in sorted({c.queue for c in rated})]
        for dimension, key, members in groups:
            n = len(members)
            promoters = sum(c.rating == 5 for c in members)
            passives = sum(c.rating == 4 for c in members)
            detractors = n - promoters - passives
            nps, csat = _pct(promoters - detractors, n), _pct(promoters + passives, n)
            rows.append(
                (day.isoformat(), dimension, key, str(n), str(promoters), str(passives), str(detractors), nps, csat)
            )
    return rows


def test_demo_survey_figures_follow_from_the_ratings_that_went_in(demo_runs: tuple[str, str, Path]) -> None:
    first, second, demo_dir = demo_runs
    assert "on moto (local AWS emulator, no AWS account used)" in first
    assert "botocore Stubber (moto has no Amazon Connect outbound calls; no call is placed)" in first
    for day in DEMO_DAYS:
        assert re.search(rf"^survey_nps_daily for {day} run \S+: success$", first, re.M), first
    plan = plan_traffic()
    for day, contacts in plan.items():
        called = sum(c.surveyed for c in contacts)
        assert re.search(
            rf"^  {day}  {len(contacts)} CTRs in \d+ Kinesis batches -> process_ctr_stream: {called} called",
            first,
            re.M,
        )
    # The special cases: a redelivered CTR calls nobody twice, a retried rating stores nothing twice,
    # a key outside 1-5 is refused with the flow's error code.
    assert re.search(r"redelivered CTR: contact \S+: duplicate, no second call$", first, re.M)
    assert re.search(r"retried rating: survey call \S+: result OK, duplicate=true$", first, re.M)
    assert 'bad rating: key "7" -> ERROR INVALID_RATING' in first
    stored = sum(c.surveyed and c.rating is not None for cs in plan.values() for c in cs)
    assert f"SurveyResponses now holds {stored} answers" in first
    assert "no full phone number" in first
    phones = {c.phone for cs in plan.values() for c in cs}
    logs = (demo_dir / "survey" / "lambda-logs.jsonl").read_text(encoding="utf-8")
    assert logs and not [p for p in phones if p in logs or p[1:] in logs]
    assert "summary events (3) on SNS topic" in first

    assert SURVEY_ROW.findall(first) == _expected_rows()
    # A second run: the same answers give the same table and the same chart bytes.
    assert SURVEY_ROW.findall(second) == SURVEY_ROW.findall(first)
    charts = CHART.findall(first) + CHART.findall(second)
    assert len(charts) == 2 and charts[0] == charts[1]
    assert Counter(p.suffix for p in (demo_dir / "objects" / "survey-nps").rglob("*.*")) == {".csv": 3, ".png": 3}
