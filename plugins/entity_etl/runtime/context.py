"""Build a :class:`RunContext` from plain arguments: shared by ``etlctl run-stage`` and the local backend."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from entity_etl.config.loader import default_paths, find_entity
from entity_etl.runtime import remote_include, settings
from entity_etl.runtime.connections import ConnectionResolver, resolve_connection
from entity_etl.runtime.lease import default_ttl_s, open_lease_store
from entity_etl.runtime.metrics import open_metrics
from entity_etl.runtime.object_store import open_object_store
from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages import RunContext
from entity_etl.runtime.translators import open_translator


def parse_timestamp(value: str | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def build_context(
    *,
    entity: str,
    run_id: str,
    interval_start: str | dt.datetime,
    interval_end: str | dt.datetime,
    resolver: ConnectionResolver | None = None,
    object_store_url: str | None = None,
    entities_dir: Path | None = None,
    sql_dir: Path | None = None,
    lease_owner: str | None = None,
    attempt: int | None = None,
) -> RunContext:
    if entities_dir is None and sql_dir is None and os.environ.get(remote_include.ENV):
        # The Batch job: the entity's files as Airflow sees them, not the image's build-time copy.
        entities_dir, sql_dir = remote_include.fetch_entity_files(
            os.environ[remote_include.ENV], entity, settings.scratch_dir()
        )
    # The numeric settings first, each one clear line if it is bad, before anything is opened.
    default_ttl_s()
    attempt = attempt if attempt is not None else _int_env("ETL_ATTEMPT", low=1)
    lease_epoch = _int_env("ETL_LEASE_EPOCH", low=0)
    default_entities, default_sql = default_paths()
    config = find_entity(entity, entities_dir or default_entities, sql_dir or default_sql)
    start, end = parse_timestamp(interval_start), parse_timestamp(interval_end)
    if end < start:
        raise ValueError(f"{entity}: interval end {end.isoformat()} is before its start {start.isoformat()}")
    return RunContext(
        config=config,
        run_id=run_id,
        interval_start=start,
        interval_end=end,
        store=open_object_store(object_store_url or settings.object_store_url()),
        resolve_connection=resolver or resolve_connection,
        sql_dir=sql_dir or default_sql,
        translator_factory=open_translator,
        scratch_dir=settings.scratch_dir(),
        run_store=open_run_store(),
        lease_store=open_lease_store(),
        lease_owner=lease_owner if lease_owner is not None else (os.environ.get("ETL_LEASE_OWNER") or None),
        metrics=open_metrics(),
        attempt=attempt,
        lease_epoch=lease_epoch,
        batch_job_id=os.environ.get("AWS_BATCH_JOB_ID", ""),
    )


def _int_env(name: str, *, low: int) -> int | None:
    value = settings.env_number(name, None, low=low, integer=True)
    return None if value is None else int(value)
