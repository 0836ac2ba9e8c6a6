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
"""

from __future__ import annotations

import os
from pathlib import Path


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
