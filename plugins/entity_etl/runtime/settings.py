"""Deployment settings of the stage runtime, read from the environment (nothing from Airflow).

| variable                | meaning                                              | default                      |
| ----------------------- | ---------------------------------------------------- | ---------------------------- |
| ETL_OBJECT_STORE_URL    | where extracts go: ``s3://bucket/prefix`` or a path   | ``~/.local/share/entity-etl/objects`` |
| ETL_TRANSLATOR          | ``amazon`` or ``glossary``                           | ``glossary``                 |
| ETL_SECRETS_BACKEND     | ``aws`` to also look up Secrets Manager              | ``env``                      |
| ETL_SECRETS_PREFIX      | Secrets Manager prefix for connections              | ``airflow/connections``      |
| ETL_INCLUDE_DIR         | folder holding ``entities/`` and ``sql/``            | the repo's ``include/``      |
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
