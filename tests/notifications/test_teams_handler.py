"""``lambdas/notifications/handler.py``: the Lambda imports neither Airflow nor ``entity_etl``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.notify_events import LAMBDA_DIR

pytestmark = pytest.mark.moto


def test_the_lambda_imports_neither_airflow_nor_entity_etl(tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'entity_etl'):\n"
        "            raise ImportError(name + ' is not in the Lambda package')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import handler; print(handler.handler.__name__)"],
        env={"PYTHONPATH": f"{tmp_path}:{LAMBDA_DIR}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "handler"
