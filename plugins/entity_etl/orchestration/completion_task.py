"""The task after ``load_target``: publish the "entity loaded" completion event for downstream systems."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class EntityLoadedPublishOperator(BaseOperator):
    """After load_target: publish the "entity loaded" event for downstream systems."""

    template_fields: Sequence[str] = ("entity",)

    def __init__(self, *, entity: str, stages: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entity = entity
        self.stages = list(stages)

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
        return event
