"""Where a run's files live in the object store: pure functions of the entity and the run id.

``RunContext`` (``runtime/stages/context.py``) exposes them as properties; the orchestrator reads a job's
statistics with them, without building a whole run context.
"""

from __future__ import annotations

import hashlib
import re


def run_key(run_id: str) -> str:
    """``run_id`` made safe for an object key, with a short hash so distinct ids never collide."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)[:100]
    return f"{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def extract_prefix(entity: str, run_id: str) -> str:
    return f"extracts/{entity}/{run_key(run_id)}/"


def manifest_key(entity: str, run_id: str) -> str:
    return extract_prefix(entity, run_id) + "_manifest.json"


def stats_key(entity: str, run_id: str, stage: str) -> str:
    return f"runs/{entity}/{run_key(run_id)}/stats/{stage}.json"
