"""Build a :class:`RunContext` from plain arguments: shared by ``etlctl run-stage`` and the local backend."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from entity_etl.config.loader import default_paths, find_entity
from entity_etl.runtime import settings
from entity_etl.runtime.connections import ConnectionResolver, resolve_connection
from entity_etl.runtime.object_store import open_object_store
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
) -> RunContext:
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
    )
