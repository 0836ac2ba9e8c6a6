"""`make demo`'s driver, end to end through Airflow, twice: same target contents both times."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from entity_files import ROOT

pytestmark = pytest.mark.slow


def run_demo(demo_dir: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ETL_"))}
    env["DEMO_DIR"] = str(demo_dir)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run_demo.py")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def test_demo_runs_every_entity_and_is_repeatable(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "demo")
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
    checksums = re.findall(r"^\s+(company_\w+)\s+(\d+) rows\s+sha256:(\w+)$", first, re.M)
    assert len(checksums) == 3 and all(int(n) > 0 for _, n, _ in checksums)

    second = run_demo(tmp_path / "demo")
    assert re.findall(r"^\s+(company_\w+)\s+(\d+) rows\s+sha256:(\w+)$", second, re.M) == checksums
