"""The Airflow Asset of an entity's target table, for downstream DAGs to schedule on.

``publish_loaded`` declares ``Asset("x-entity-etl://<entity>/<target table>")`` as its outlet and, after a
successful load, annotates the asset event with the run's figures (:func:`asset_extra`). A downstream DAG
schedules on the same URI::

    from airflow.sdk import DAG, Asset
    with DAG("report_de", schedule=Asset("x-entity-etl://de/company_de"), ...):
        ...  # context["triggering_asset_events"][asset][-1].extra is asset_extra()'s dict

The asset's name is its URI (Airflow's default), so a consumer's ``Asset(uri)`` is the same asset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

#: ``x-``: a custom scheme Airflow does not normalise. Any other scheme makes ``Asset()`` load every
#: provider's URI handlers at parse time (amazon's S3 hook, boto3), which a DAG-file parse must not do.
ASSET_SCHEME = "x-entity-etl"


def entity_asset_uri(entity: str, target_table: str) -> str:
    """``x-entity-etl://<entity>/<target table>``, e.g. ``x-entity-etl://de/company_de``."""
    return f"{ASSET_SCHEME}://{entity}/{target_table}"


def entity_asset(entity: str, target_table: str) -> Asset:
    return Asset(entity_asset_uri(entity, target_table))


def asset_extra(event: Mapping[str, Any], target_table: str) -> dict[str, Any]:
    """The asset event's ``extra``: what the "entity loaded" SQS event says, plus the target table.

    Keys: ``entity``, ``target_table``, ``run_id``, ``event_id``, ``interval_start``, ``interval_end``
    (ISO 8601), ``rows_extracted``, ``rows_loaded``, ``target_rows``, ``duplicates_removed`` and
    ``extract_uri`` (the extract's manifest). JSON types only: Airflow stores ``extra`` as JSON.
    """
    counts = event.get("row_counts", {})
    interval = event.get("data_interval", {})
    return {
        "entity": str(event["entity"]),
        "target_table": target_table,
        "run_id": str(event["run_id"]),
        "event_id": str(event["event_id"]),
        "interval_start": str(interval.get("start", "")),
        "interval_end": str(interval.get("end", "")),
        "rows_extracted": int(counts.get("extracted", 0)),
        "rows_loaded": int(counts.get("loaded", 0)),
        "target_rows": int(counts.get("target_rows", 0)),
        "duplicates_removed": int(counts.get("duplicates_removed", 0)),
        "extract_uri": str(event.get("extract_uri", "")),
    }
