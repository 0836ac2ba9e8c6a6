"""Which compute backend runs the stages: a deployment setting, never DAG code.

Resolved when a task runs (so the DAG, and its shape, is the same for both):

1. the environment variable ``ETL_COMPUTE_BACKEND``;
2. the Airflow Variable ``etl_compute_backend`` (which Airflow also reads from
   ``AIRFLOW_VAR_ETL_COMPUTE_BACKEND``);
3. ``local``.

``local`` runs the stage code in the worker; ``batch`` submits it to AWS Batch (Fargate).
"""

from __future__ import annotations

import os

BACKENDS = ("local", "batch")
VARIABLE = "etl_compute_backend"


class BackendSettingError(ValueError):
    pass


def _check(value: str, where: str) -> str:
    value = value.strip().lower()
    if value not in BACKENDS:
        raise BackendSettingError(f"{where}={value!r} is not a compute backend; use one of {', '.join(BACKENDS)}")
    return value


def compute_backend() -> str:
    env = os.environ.get("ETL_COMPUTE_BACKEND")
    if env:
        return _check(env, "ETL_COMPUTE_BACKEND")
    from airflow.sdk import Variable

    value = Variable.get(VARIABLE, default="local")
    return _check(str(value), f"Airflow Variable {VARIABLE}")
