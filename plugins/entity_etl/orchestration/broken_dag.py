"""The DAG of an entity file that stopped validating: listed, scheduled, and failing at once, visibly.

A typo in an existing file must not make its DAG vanish (its schedule would silently stop): the DAG
keeps its id, schedule and tags (read best effort by :mod:`entity_etl.config.broken`), its doc shows
every problem, and each run fails in its one task, ``config_error``, so the failure notifications
fire. Only ``enabled: false`` or removing the file takes a DAG away.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable
from airflow.sdk.exceptions import AirflowFailException

from entity_etl.config.broken import BrokenEntity

CONFIG_ERROR_TASK = "config_error"
CONFIG_ERROR_TAG = "config-error"


def config_error_message(broken: BrokenEntity) -> str:
    lines = "\n".join(str(p) for p in broken.problems)
    return f"{len(broken.problems)} problem(s) in the entity file {broken.file}; fix it to run this DAG:\n{lines}"


class EntityConfigErrorOperator(BaseOperator):
    """Fail at once, without retries, with the entity file's problems (``file: field: message``)."""

    def __init__(self, *, entity: str, message: str, **kwargs: Any) -> None:
        super().__init__(retries=0, **kwargs)
        self.entity = entity
        self.message = message

    def execute(self, context: Any) -> None:
        raise AirflowFailException(self.message)


def broken_doc_md(broken: BrokenEntity) -> str:
    schedule = f"`{broken.schedule}` ({broken.timezone})" if broken.schedule else "none"
    return "\n".join(
        [
            f"### Entity `{broken.entity}`: configuration error",
            "",
            f"**`{broken.file}` does not validate.** Every run of this DAG fails at once in `{CONFIG_ERROR_TASK}` "
            "(and sends the failure notifications) until the file is fixed. To stop the DAG instead, set "
            "`enabled: false` in the file or remove it.",
            "",
            "Problems (file: field: message):",
            "",
            "```",
            *(str(p) for p in broken.problems),
            "```",
            "",
            f"Schedule: {schedule}; {broken.schedule_note}.",
        ]
    )


def build_broken_dag(broken: BrokenEntity, *, notify_task_args: dict[str, Any], notify_dag_args: dict[str, Any]) -> DAG:
    """``etl_<entity>`` for a refused file; ``notify_*``: the failure callbacks (see ``factory.notification_args``)."""
    cron = broken.cron
    start = broken.start_date
    dag = DAG(
        dag_id=broken.dag_id,
        description=f"Entity ETL for {broken.entity}: CONFIGURATION ERROR in {broken.file}",
        schedule=CronDataIntervalTimetable(cron, timezone=broken.timezone) if cron else None,
        start_date=dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC) if start else None,
        catchup=False,  # never a backfill of failing runs
        max_active_runs=1,
        doc_md=broken_doc_md(broken),
        tags=["entity-etl", f"entity:{broken.entity}", CONFIG_ERROR_TAG, *broken.tags],
        default_args={"owner": broken.owner, **notify_task_args},
        **notify_dag_args,
    )
    EntityConfigErrorOperator(
        task_id=CONFIG_ERROR_TASK,
        entity=broken.entity,
        message=config_error_message(broken),
        dag=dag,
        doc_md="Fails at once with the entity file's problems; see the DAG's doc.",
    )
    return dag
