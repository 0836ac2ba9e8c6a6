"""The DAG factory: one ``etl_<entity>`` DAG per enabled entity file (a file that stops validating keeps
its DAG, which fails every run at once: see ``broken_dag.py``).

Parse-time rules: only files are read (no DB, no network, no Airflow Variables). When a task runs,
``get_parsing_context()`` names the DAG being executed and only that entity file is loaded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, get_parsing_context

from entity_etl.config.broken import broken_entities
from entity_etl.config.loader import LoadResult, default_paths, load_entities
from entity_etl.config.model import EntityConfig, NotifyConfig
from entity_etl.orchestration.broken_dag import build_broken_dag
from entity_etl.orchestration.completion_task import EntityLoadedPublishOperator
from entity_etl.orchestration.docs import entity_doc_md
from entity_etl.orchestration.entity_lease_tasks import EntityLeaseReleaseOperator, EntityLeaseSensor
from entity_etl.orchestration.gc_pause import collection_paused
from entity_etl.orchestration.notifier import SnsEventNotifier, run_too_long_alert
from entity_etl.orchestration.stage_operator import EntityStageOperator

DAG_PREFIX = "etl_"


#: How often a Batch stage task reads its job's CloudWatch log: as often as a stage logs its progress.
AWSLOGS_FETCH_INTERVAL = dt.timedelta(seconds=10)


class EntityConfigImportError(Exception):
    """Raised by ``dags/etl_config_errors.py`` so that invalid entity files show as import errors."""


def notification_args(entity: str, notify: NotifyConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """An entity's ``notify`` settings as (task default_args, DAG keyword arguments)."""
    common: dict[str, Any] = {"entity": entity, "topic_arn": notify.topic_arn}
    task_args: dict[str, Any] = {}
    dag_args: dict[str, Any] = {}
    if notify.on_failure:
        # Airflow calls a task's on_failure_callback only once its retries are exhausted.
        task_args["on_failure_callback"] = SnsEventNotifier("task_failed", **common)
        dag_args["on_failure_callback"] = SnsEventNotifier("dag_run_failed", **common)
    if notify.on_success:
        dag_args["on_success_callback"] = SnsEventNotifier("run_succeeded", **common)
    if notify.max_run_minutes:
        dag_args["deadline"] = run_too_long_alert(
            entity, dt.timedelta(minutes=notify.max_run_minutes), topic_arn=notify.topic_arn
        )
    return task_args, dag_args


def build_entity_dag(config: EntityConfig, *, entities_dir: Path | None = None) -> DAG:
    source_file = f"include/entities/{config.entity}.yaml"
    schedule = CronDataIntervalTimetable(config.cron, timezone=config.timezone) if config.cron else None
    notify_task_args, notify_dag_args = notification_args(config.entity, config.notify)
    dag = DAG(
        dag_id=config.dag_id,
        description=config.description or f"Entity ETL for {config.entity}",
        schedule=schedule,
        start_date=dt.datetime.combine(config.start_date, dt.time(), tzinfo=dt.UTC),
        catchup=config.catchup,
        max_active_runs=1,
        max_active_tasks=1,
        doc_md=entity_doc_md(config, source_file),
        tags=["entity-etl", f"entity:{config.entity}", *config.tags],
        default_args={
            "owner": config.owner,
            "retries": config.retries,
            "retry_delay": dt.timedelta(minutes=config.retry_delay_minutes),
            **notify_task_args,
        },
        render_template_as_native_obj=False,
        **notify_dag_args,
    )
    acquire = EntityLeaseSensor(
        task_id="acquire_lease",
        entity=config.entity,
        wait_s=config.lease_wait_minutes * 60,
        dag=dag,
        doc_md="Setup: wait until this run holds the entity lease (no other run of the entity anywhere).",
    ).as_setup()
    previous: Any = acquire
    for stage in config.stages:
        task = EntityStageOperator(
            task_id=stage,
            entity=config.entity,
            stage=stage,
            compute=config.compute,
            partitions=config.extract_partitions,
            dag=dag,
            doc_md=f"Stage `{stage}` of entity `{config.entity}`.",
            # On the batch backend the job's CloudWatch log is streamed into the task log (README, "Logs").
            awslogs_enabled=True,
            awslogs_fetch_interval=AWSLOGS_FETCH_INTERVAL,
        )
        previous >> task
        previous = task
    publish = EntityLoadedPublishOperator(
        task_id="publish_loaded", entity=config.entity, stages=config.stages, target_table=config.target.table, dag=dag
    )
    release = EntityLeaseReleaseOperator(
        task_id="release_lease",
        entity=config.entity,
        stages=config.stages,
        dag=dag,
        doc_md="Teardown: close the run record and release the entity lease, even when a stage failed.",
    ).as_teardown(setups=acquire)
    previous >> publish >> release
    return dag


def _only_entity() -> str | None:
    dag_id = get_parsing_context().dag_id
    if dag_id and dag_id.startswith(DAG_PREFIX):
        return dag_id[len(DAG_PREFIX) :]
    return None


def load_for_parsing(entities_dir: Path | None = None, sql_dir: Path | None = None) -> LoadResult:
    default_entities, default_sql = default_paths()
    return load_entities(entities_dir or default_entities, sql_dir or default_sql, only=_only_entity())


def register_entity_dags(
    namespace: MutableMapping[str, Any], entities_dir: Path | None = None, sql_dir: Path | None = None
) -> list[str]:
    """Build every valid, enabled entity's DAG into ``namespace`` (a DAG file's ``globals()``).

    An invalid file (also reported by ``dags/etl_config_errors.py``) gets its broken DAG, which fails
    every run at once, unless it says ``enabled: false``; one bad file never takes the others down.
    """
    built = []
    with collection_paused():  # about 190,000 long-lived objects for 1,000 entities: see gc_pause.py
        result = load_for_parsing(entities_dir, sql_dir)
        for config in result.enabled.values():
            namespace[config.dag_id] = build_entity_dag(config)
            built.append(config.dag_id)
        for broken in broken_entities(result, entities_dir or default_paths()[0]):
            if broken.enabled:
                failure_only = broken.notify.model_copy(update={"on_success": False, "max_run_minutes": None})
                task_args, dag_args = notification_args(broken.entity, failure_only)
                namespace[broken.dag_id] = build_broken_dag(
                    broken, notify_task_args=task_args, notify_dag_args=dag_args
                )
                built.append(broken.dag_id)
    return built


def raise_config_errors(entities_dir: Path | None = None, sql_dir: Path | None = None) -> None:
    """Raise one import error listing every invalid entity file as ``file: field: message``."""
    if _only_entity() is not None:
        return  # a task of some entity DAG is starting: nothing to report from here
    default_entities, default_sql = default_paths()
    with collection_paused():
        result = load_entities(entities_dir or default_entities, sql_dir or default_sql)
    if result.problems:
        lines = "\n".join(str(p) for p in result.problems)
        raise EntityConfigImportError(
            f"{len(result.problems)} problem(s) in entity files; a refused file keeps its DAG, which fails every run "
            f"until the file is fixed, and the other entities' DAGs are unaffected:\n{lines}"
        )
