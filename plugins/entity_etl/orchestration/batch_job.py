"""Pure helpers for the AWS Batch backend: deterministic job names and container overrides."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from typing import Any

from entity_etl.config.model import ComputeConfig

#: Settings forwarded from the Airflow worker's environment to the job when they are set there, so
#: that orchestrator and container agree on where extracts live and how connections resolve.
FORWARDED_ENV = ("ETL_OBJECT_STORE_URL", "ETL_SECRETS_BACKEND", "ETL_SECRETS_PREFIX", "ETL_TRANSLATOR")


def batch_job_name(entity: str, stage: str, run_id: str) -> str:
    """Deterministic per (entity, stage, run): a retry finds the job an earlier try submitted.

    Batch allows 128 letters, digits, ``-`` and ``_``; a hash of the full run id keeps names of
    different runs apart even after the readable part is cut.
    """
    digest = hashlib.sha256(f"{entity}\0{stage}\0{run_id}".encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-")
    prefix = f"etl-{entity}-{stage}-"
    room = 128 - len(prefix) - len(digest) - 1
    return f"{prefix}{readable[:room]}-{digest}"


def stage_command(
    entity: str, stage: str, run_id: str, interval_start: dt.datetime, interval_end: dt.datetime
) -> list[str]:
    return [
        "etlctl",
        "run-stage",
        "--entity",
        entity,
        "--stage",
        stage,
        "--run-id",
        run_id,
        "--interval-start",
        interval_start.isoformat(),
        "--interval-end",
        interval_end.isoformat(),
    ]


def container_overrides(compute: ComputeConfig, command: list[str]) -> dict[str, Any]:
    vcpu = compute.vcpu
    environment = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    environment.update(compute.environment)
    return {
        "command": command,
        "resourceRequirements": [
            {"type": "VCPU", "value": str(int(vcpu)) if vcpu == int(vcpu) else str(vcpu)},
            {"type": "MEMORY", "value": str(compute.memory_mib)},
        ],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
    }
