"""The Teams notification Lambda's handler module, loaded from its file the way the Lambda runtime loads it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambdas" / "notifications"


def load_teams_handler(module_name: str = "teams_notifications_handler") -> ModuleType:
    # The Lambda runtime puts the zip root on sys.path: the handler imports the modules next to it.
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.append(str(LAMBDA_DIR))
    spec = importlib.util.spec_from_file_location(module_name, LAMBDA_DIR / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
