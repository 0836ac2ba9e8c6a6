"""``deploy/cloudformation/package_lambdas.py``: each Lambda zip holds what its handler imports, and runs alone."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from support.cloudformation_checks import NOTIFICATION_EVENTS
from support.cloudformation_stack import (
    ROOT,
    package_lambdas,
)


def test_the_lambda_zips_run_on_their_own(tmp_path: Path) -> None:
    """Each zip holds what its handler imports: the files it shares with entity_etl are copies (not
    symlinks), and the notifications handler, unzipped alone, imports and builds a card without
    Airflow or entity_etl."""
    zips = package_lambdas()
    lambda_dir = ROOT / "lambdas" / "notifications"
    with zipfile.ZipFile(io.BytesIO(zips.notifications_zip())) as archive:
        names = set(archive.namelist())
        assert names == {path.name for path in lambda_dir.glob("*.py")}
        assert (
            archive.read("notification_contract.py")
            == (ROOT / "plugins/entity_etl/notification_contract.py").read_bytes()
        )
        assert archive.read("redaction.py") == (ROOT / "plugins/entity_etl/runtime/redaction.py").read_bytes()
        archive.extractall(tmp_path / "notifications")
    with zipfile.ZipFile(io.BytesIO(zips.survey_zip())) as archive:
        assert archive.read("survey/responses.py") == (ROOT / "plugins/entity_etl/survey_reader.py").read_bytes()
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'entity_etl', 'lambdas'):\n"
        "            raise ImportError(name + ' is not in the Lambda package')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    event = (NOTIFICATION_EVENTS / "batch-job-failed.json").read_text()
    script = (
        "import json, sys, handler\n"
        "card, fields = handler.build_card(sys.stdin.read())\n"
        "print(json.dumps([card['attachments'][0]['content']['body'][0]['text'], fields['kind']]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=event,
        cwd=tmp_path / "notifications",
        env={"PYTHONPATH": f"{tmp_path / 'blocker'}:{tmp_path / 'notifications'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    title, kind = json.loads(proc.stdout)
    assert title.startswith("❌ AWS Batch job failed") and kind == "Batch Job State Change"
