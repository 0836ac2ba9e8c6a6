"""Entity files fetched at run time: ``ETL_INCLUDE_URL`` (``s3://bucket/dags/include`` or a folder).

The Batch job image bakes in the ``include/`` of its build. With ``ETL_INCLUDE_URL`` set (the operator
forwards it), ``etlctl run-stage`` reads the entity's files from where Airflow reads them instead:
``entities/_defaults.yaml``, ``entities/<entity>.yaml`` and the extract SQL it names, so an entity
added or changed by uploading YAML + SQL runs on AWS Batch with no image rebuild.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from pathlib import Path

import yaml

from entity_etl.runtime.object_store import open_object_store

ENV = "ETL_INCLUDE_URL"


class RemoteIncludeError(RuntimeError):
    """The entity's files could not be fetched; the message names the URL and the file."""


def fetch_entity_files(url: str, entity: str, scratch: Path | None = None) -> tuple[Path, Path]:
    """Download the entity's files from ``url`` into a private folder; return ``(entities_dir, sql_dir)``."""
    store = open_object_store(url)
    root = Path(tempfile.mkdtemp(prefix=f"include-{entity}-", dir=scratch))
    atexit.register(shutil.rmtree, root, True)
    entities, sql = root / "entities", root / "sql"
    entities.mkdir()
    sql.mkdir()
    try:
        store.get_file(f"entities/{entity}.yaml", entities / f"{entity}.yaml")
    except FileNotFoundError:
        raise RemoteIncludeError(
            f"{entity}: no entity file {store.uri(f'entities/{entity}.yaml')} ({ENV}={url})"
        ) from None
    with contextlib.suppress(FileNotFoundError):  # the defaults file is optional
        store.get_file("entities/_defaults.yaml", entities / "_defaults.yaml")
    try:
        document = yaml.safe_load((entities / f"{entity}.yaml").read_text(encoding="utf-8")) or {}
        extract_sql = document.get("source", {}).get("extract_sql")
    except (yaml.YAMLError, AttributeError):
        extract_sql = None  # the loader reports what is wrong with the file, naming it
    if isinstance(extract_sql, str) and extract_sql and ".." not in Path(extract_sql).parts:
        (sql / extract_sql).parent.mkdir(parents=True, exist_ok=True)
        # A missing SQL file is reported by the loader, naming the entity and the field.
        with contextlib.suppress(FileNotFoundError):
            store.get_file(f"sql/{extract_sql}", sql / extract_sql)
    return entities, sql
