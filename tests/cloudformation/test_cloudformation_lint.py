"""``cfn-lint`` passes on every template in deploy/cloudformation/, and fails on a broken one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from support.cloudformation_stack import (
    CFN_DIR,
    RESOURCES,
    TEMPLATE_PATH,
)

TEMPLATES = sorted(CFN_DIR.glob("*.yaml"))


def cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("cfn-lint")
    assert binary.exists(), "cfn-lint is in the dev dependency group (uv sync)"
    return subprocess.run([str(binary), "--", *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_there_is_a_template_and_the_linter_passes_it() -> None:
    assert TEMPLATE_PATH in TEMPLATES
    result = cfn_lint(*TEMPLATES)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_linter_fails_a_broken_template(tmp_path: Path) -> None:
    """The gate has teeth: a misspelt property and a retired runtime, in this template's own resources."""
    queue = RESOURCES["CompletionDeadLetterQueue"]
    function = RESOURCES["NotificationsFunction"]
    broken = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "Queue": {"Type": queue["Type"], "Properties": {"QueueName": "q", "RetentionPeriod": 14}},
            "Function": {
                "Type": function["Type"],
                "Properties": {
                    **{k: function["Properties"][k] for k in ("Handler", "Timeout")},
                    "Runtime": "python2.7",
                    "Role": "arn:aws:iam::123456789012:role/r",
                    "Code": {"ZipFile": "def handler(event, context): pass"},
                },
            },
        },
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = cfn_lint(path)
    assert result.returncode != 0
    assert "RetentionPeriod" in result.stdout and "python2.7" in result.stdout
