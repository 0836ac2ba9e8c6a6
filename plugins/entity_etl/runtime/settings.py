"""Deployment settings of the stage runtime, read from the environment (nothing from Airflow).

| variable                | meaning                                              | default                      |
| ----------------------- | ---------------------------------------------------- | ---------------------------- |
| ETL_OBJECT_STORE_URL    | where extracts go: ``s3://bucket/prefix`` or a path   | ``~/.local/share/entity-etl/objects`` |
| ETL_TRANSLATOR          | ``amazon`` or ``glossary``                           | ``glossary``                 |
| ETL_SECRETS_BACKEND     | ``aws`` to also look up Secrets Manager              | ``env``                      |
| ETL_SECRETS_PREFIX      | Secrets Manager prefix for connections              | ``airflow/connections``      |
| ETL_INCLUDE_DIR         | folder holding ``entities/`` and ``sql/``            | :func:`include_dir`          |
| ETL_INCLUDE_URL         | fetch the entity's files from there per run (Batch)  | unset: ``ETL_INCLUDE_DIR``   |
| ETL_SCRATCH_DIR         | local temporary files                                 | the system temp dir          |
| ETL_EXTRACT_WORKERS     | extract partitions run at once, in worker processes  | ``1`` (one after the other)  |

Numeric settings (``ETL_LEASE_TTL_S``, ``ETL_ATTEMPT``, ``ETL_LEASE_EPOCH``, ``ETL_EXTRACT_WORKERS``) go through :func:`env_number`:
text, ``nan``, ``inf`` or a value out of range is one :class:`ValueError` line naming the variable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def env_number(
    name: str,
    default: float | None,
    *,
    low: float,
    high: float = math.inf,
    integer: bool = False,
    unit: str = "",
) -> float | None:
    """``$name`` as a finite number in ``[low, high]`` (an integer with ``integer``); ``default`` when unset
    or empty. Anything else is a :class:`ValueError` that names the variable and the accepted range."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    kind = ("an integer" if integer else "a number") + (f" of {unit}" if unit else "")
    span = f"at least {low:g}" if high == math.inf else f"from {low:g} to {high:g}"
    try:
        value: float = int(text) if integer else float(text)
        ok = math.isfinite(value) and low <= value <= high
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{name}={text!r}: must be {kind} {span}")
    return value


def object_store_url() -> str:
    return os.environ.get("ETL_OBJECT_STORE_URL") or str(Path.home() / ".local/share/entity-etl/objects")


def scratch_dir() -> Path | None:
    value = os.environ.get("ETL_SCRATCH_DIR")
    return Path(value) if value else None


def include_dir() -> Path:
    """The folder holding ``entities/``, ``sql/`` and ``translate/``.

    ``ETL_INCLUDE_DIR`` if set; else the repo's ``include/`` when the package runs from a checkout; else
    ``include/`` in Airflow's DAGs folder (``AIRFLOW__CORE__DAGS_FOLDER``), where MWAA syncs it while the
    package itself comes from ``plugins.zip``.
    """
    value = os.environ.get("ETL_INCLUDE_DIR")
    if value:
        return Path(value)
    repo_include = Path(__file__).resolve().parents[3] / "include"
    dags_folder = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if not repo_include.is_dir() and dags_folder:
        return Path(dags_folder) / "include"
    return repo_include


EXTRACT_WORKERS_ENV = "ETL_EXTRACT_WORKERS"


def extract_workers() -> int:
    """``ETL_EXTRACT_WORKERS``: how many key-range partitions (``source.split_points``) one extract stage
    runs at once, each in its own worker process, when it runs them all itself (no ``--partition``);
    1, the default, runs them one after the other in the stage's own process."""
    return int(env_number(EXTRACT_WORKERS_ENV, 1, low=1, integer=True) or 1)
