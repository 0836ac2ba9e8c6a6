"""The AWS Batch job of one stage, as pure functions: its deterministic name, command, container
overrides and array size."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from typing import Any

from entity_etl.config.model import ComputeConfig

#: Settings forwarded from the Airflow worker's environment to the job when they are set there, so
#: that orchestrator and container agree on where extracts live and how connections resolve.
FORWARDED_ENV = (
    "ETL_OBJECT_STORE_URL",
    "ETL_INCLUDE_URL",
    "ETL_SECRETS_BACKEND",
    "ETL_SECRETS_PREFIX",
    "ETL_TRANSLATOR",
    "ETL_STATE_STORE",
    "ETL_RUNS_TABLE",
    "ETL_LEASES_TABLE",
    "ETL_LEASE_TTL_S",
    "ETL_METRICS",
    "ETL_METRICS_NAMESPACE",
)
#: Run-time options (not deployment settings) forwarded the same way: the job logs at the worker's
#: ``ETL_LOG_LEVEL`` (``runtime/progress.py``), so its streamed CloudWatch log matches a local task log;
#: ``ETL_EXTRACT_WORKERS`` (``runtime/settings.py``) too, though an array child runs one partition only.
FORWARDED_OPTIONS = ("ETL_LOG_LEVEL", "ETL_EXTRACT_WORKERS")
#: AWS Batch's largest array job.
MAX_ARRAY_SIZE = 10_000


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


def container_overrides(
    compute: ComputeConfig, command: list[str], run_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``containerOverrides``: the command, vCPU and memory, and the environment.

    Environment, lowest precedence first: forwarded deployment settings and options, the entity's
    ``compute.environment``, then ``run_env`` (this run's lease owner and try number).
    """
    vcpu = compute.vcpu
    forwarded = (*FORWARDED_ENV, *FORWARDED_OPTIONS)
    environment = {name: os.environ[name] for name in forwarded if os.environ.get(name)}
    environment.update(compute.environment)
    environment.update({k: v for k, v in (run_env or {}).items() if v})
    return {
        "command": command,
        "resourceRequirements": [
            {"type": "VCPU", "value": str(int(vcpu)) if vcpu == int(vcpu) else str(vcpu)},
            {"type": "MEMORY", "value": str(compute.memory_mib)},
        ],
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
    }


def array_properties(entity: str, stage: str, partitions: int) -> dict[str, Any] | None:
    """``arrayProperties`` of the stage's job: an extract of more than one partition is an array job of
    that size (each child extracts the key range of its ``AWS_BATCH_JOB_ARRAY_INDEX``); None otherwise."""
    if stage != "extract" or partitions <= 1:
        return None
    if not 2 <= partitions <= MAX_ARRAY_SIZE:
        raise ValueError(f"{entity}: extract: {partitions} partitions; AWS Batch arrays hold 2 to 10,000")
    return {"size": partitions}
