"""The task after ``load_target``: publish the "entity loaded" completion event for downstream systems.

Two channels: the JSON event on SQS (or the local outbox) for systems outside Airflow, and, when the
task knows the entity's target table, an Airflow Asset event on ``x-entity-etl://<entity>/<table>``
(``entity_asset.py``) for downstream DAGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from entity_etl.orchestration.entity_asset import asset_extra, entity_asset


class EntityLoadedPublishOperator(BaseOperator):
    """After load_target: publish the "entity loaded" event for downstream systems."""

    template_fields: Sequence[str] = ("entity",)

    def __init__(self, *, entity: str, stages: Sequence[str], target_table: str | None = None, **kwargs: Any) -> None:
        asset = entity_asset(entity, target_table) if target_table else None
        if asset is not None:
            kwargs.setdefault("outlets", [asset])
        asset_doc = f" and the Asset event `{asset.uri}`" if asset else ""
        kwargs.setdefault("doc_md", f'Publish the "entity loaded" event (SQS){asset_doc} for downstream systems.')
        super().__init__(**kwargs)
        self.entity = entity
        self.stages = list(stages)
        self.target_table = target_table

    def execute(self, context: Any) -> dict[str, Any]:
        from entity_etl.runtime.completion_events import entity_loaded_event, open_completion_publisher

        ti = context["ti"]
        stats = {stage: ti.xcom_pull(task_ids=stage) or {} for stage in self.stages}
        extract = stats.get("extract", {}).get("details", {})
        event = entity_loaded_event(
            entity=self.entity,
            run_id=str(context["run_id"]),
            interval_start=context["data_interval_start"].isoformat(),
            interval_end=context["data_interval_end"].isoformat(),
            stats=stats,
            extract_uri=str(extract.get("manifest", "")),
        )
        where = open_completion_publisher().publish(event)
        self.log.info("entity loaded event %s published to %s", event["event_id"], where)
        if self.target_table:
            asset = entity_asset(self.entity, self.target_table)
            # Airflow records the outlet's asset event when this task succeeds, with this extra.
            context["outlet_events"][asset].extra = asset_extra(event, self.target_table)
            self.log.info("asset event on %s (emitted when this task succeeds)", asset.uri)
        return event
