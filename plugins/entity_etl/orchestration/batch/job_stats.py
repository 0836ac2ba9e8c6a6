"""The statistics a stage's AWS Batch job wrote, read from the object store."""

from __future__ import annotations

import json
from typing import Any


def read_job_stats(entity: str, stage: str, run_id: str, job_id: str | None, log: Any) -> dict[str, Any]:
    """The stage's statistics (``runs/<entity>/<run key>/stats/<stage>.json``) with the job's id added.

    A job that succeeded without writing them gets a warning and the bare identifiers instead.
    """
    from entity_etl.runtime import settings
    from entity_etl.runtime.object_keys import stats_key
    from entity_etl.runtime.object_store import open_object_store

    store = open_object_store(settings.object_store_url())
    key = stats_key(entity, run_id, stage)
    try:
        stats: dict[str, Any] = json.loads(store.get_bytes(key))
    except FileNotFoundError:
        log.warning("job %s succeeded but wrote no statistics at %s", job_id, store.uri(key))
        return {"entity": entity, "stage": stage, "run_id": run_id, "job_id": job_id}
    stats["job_id"] = job_id
    return stats
