"""The stage runtime never imports Airflow: the Batch image does not ship it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support.entity_files import ROOT

PACKAGE = ROOT / "plugins" / "entity_etl"


def test_runtime_and_config_do_not_import_airflow_at_all() -> None:
    offenders = []
    for folder in ("runtime", "config"):
        for path in (PACKAGE / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "airflow"]
    offenders += [
        str(p) for p in [PACKAGE / "cli.py"] if "import airflow" in p.read_text() or "from airflow" in p.read_text()
    ]
    assert offenders == []


def test_etlctl_runs_with_airflow_unimportable(tmp_path: Path) -> None:
    """Run the CLI with a meta-path hook that makes any `airflow` import fail."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'airflow' or name.startswith('airflow.'):\n"
        "            raise ImportError('airflow is not installed in the job image')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT / 'plugins'}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "entity_etl.cli", "validate"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ok: de" in proc.stdout
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import entity_etl.runtime.stages, entity_etl.runtime.context, sys; "
            "assert not any(m.split('.')[0] == 'airflow' for m in sys.modules)",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
