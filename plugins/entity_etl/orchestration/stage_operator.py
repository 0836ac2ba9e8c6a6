"""``EntityStageOperator``: one stage of one entity run, on the backend the deployment chooses.

With the ``batch`` backend the stage runs as an AWS Batch (Fargate) job through the amazon provider's
``BatchOperator`` (:class:`~entity_etl.orchestration.batch.provider_job.StageBatchJob`), so job monitoring,
log links and deferral come from the provider. With the ``local`` backend it runs the same stage code in
the worker instead. Either way the stage statistics are returned, so they land in XCom.

Every parse of the DAG file builds this operator 5 or 6 times per entity, but a task executes it once.
So it is a plain ``BaseOperator`` that presents the ``BatchOperator`` surface to Airflow: the same
template fields, renderers, console links, keyword arguments and defaults, and the same serialized task.
It builds the ``BatchOperator`` only in ``execute``. Subclassing ``BatchOperator`` meant four nested
``apply_defaults`` layers per task, plus the provider's boto3 imports on every parse. That came to 0.6 to
0.9 s of a 1,000-entity parse (bench/README.md).

This module chooses the backend and holds the operator's surface; the Batch side (the job's spec, the
provider's job, the lease kept alive, the failure's diagnosis, the statistics) is ``orchestration/batch/``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.backend import compute_backend
from entity_etl.orchestration.batch import surface
from entity_etl.orchestration.batch.diagnosis import explain_failure
from entity_etl.orchestration.batch.job_spec import array_properties, batch_job_name, container_overrides, stage_command
from entity_etl.orchestration.batch.job_stats import read_job_stats
from entity_etl.orchestration.batch.lease_keepalive import lease_kept_alive
from entity_etl.orchestration.connections import airflow_connection
from entity_etl.orchestration.entity_lease_tasks import lease_owner

if TYPE_CHECKING:
    from entity_etl.orchestration.batch.provider_job import StageBatchJob


class EntityStageOperator(BaseOperator):
    template_fields: Sequence[str] = (*surface.TEMPLATE_FIELDS, "entity", "stage")
    template_fields_renderers = surface.TEMPLATE_FIELDS_RENDERERS
    operator_extra_links = surface.OPERATOR_EXTRA_LINKS
    ui_color = "#e8f4fa"

    # BatchOperator's defaults, for the arguments a task does not set. They are class attributes because
    # setting them per task, through BaseOperator.__setattr__, would cost about 20 calls per task and parse.
    # ``job_name``, ``job_definition``, ``job_queue``, ``parameters`` and ``tags`` are set in __init__.
    job_name: str
    job_definition: str
    job_queue: str
    parameters: dict[str, Any]
    tags: dict[str, Any]
    job_id: str | None = None
    container_overrides: dict[str, Any] | None = None
    array_properties: dict[str, Any] | None = None
    ecs_properties_override: dict[str, Any] | None = None
    eks_properties_override: dict[str, Any] | None = None
    node_overrides: dict[str, Any] | None = None
    share_identifier: str | None = None
    scheduling_priority_override: int | None = None
    retry_strategy: dict[str, Any] | None = None
    waiters: Any | None = None
    max_retries: int = 4200
    status_retries: int | None = None
    wait_for_completion: bool = True
    deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False)
    poll_interval: int = 30
    awslogs_enabled: bool = False
    awslogs_fetch_interval: dt.timedelta = dt.timedelta(seconds=30)
    submit_job_timeout: int | None = None
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    verify: bool | str | None = None
    botocore_config: dict[str, Any] | None = None

    # Set when the task runs.
    backend: str | None = None
    _lease_owner: str | None = None
    _attempt: int | None = None
    _batch_job: StageBatchJob | None = None

    def __init__(self, *, entity: str, stage: str, compute: ComputeConfig, partitions: int = 1, **kwargs: Any) -> None:
        """``partitions``: the entity's extract partitions (``source.split_points`` + 1). With more than one,
        the extract is an AWS Batch array job of that size; each child extracts the key range of its
        ``AWS_BATCH_JOB_ARRAY_INDEX`` and the last one to finish merges the manifest. The local backend runs
        the partitions one after the other in the worker.
        """
        batch = {name: kwargs.pop(name) for name in surface.ARGUMENTS if name in kwargs}
        batch.setdefault("job_name", f"etl-{entity}-{stage}")  # replaced per run in execute()
        batch.setdefault("job_definition", compute.job_definition)
        batch.setdefault("job_queue", compute.job_queue)
        if (array := array_properties(entity, stage, partitions)) is not None:
            batch.setdefault("array_properties", array)
        if default_args := kwargs.get("default_args"):  # as Airflow applies them to BatchOperator's arguments
            batch.update({k: default_args[k] for k in surface.ARGUMENTS if k in default_args and k not in batch})
        super().__init__(**kwargs)
        batch["parameters"] = batch.get("parameters") or {}  # as BatchOperator does
        batch["tags"] = batch.get("tags") or {}
        for name, value in batch.items():
            setattr(self, name, value)
        self.entity = entity
        self.stage = stage
        self.compute = compute

    # -- both backends ----------------------------------------------------------------------------
    def _interval(self, context: Any) -> tuple[dt.datetime, dt.datetime]:
        start = context.get("data_interval_start") or context.get("logical_date")
        end = context.get("data_interval_end") or start
        if start is None:
            raise ValueError(
                f"{self.entity}: the run has no data interval; trigger it with a logical date "
                "(schedule: null entities extract their whole query)"
            )
        return start, end

    def execute(self, context: Any) -> Any:
        self.backend = compute_backend()
        run_id = str(context["run_id"])
        self._lease_owner = lease_owner(context)
        self._attempt = int(context["ti"].try_number) if context.get("ti") is not None else None
        start, end = self._interval(context)
        self.log.info("entity %s stage %s run %s on the %s backend", self.entity, self.stage, run_id, self.backend)
        if self.backend == "local":
            # No Batch job, so no Batch console/log links to publish after the task.
            self.operator_extra_links = ()  # type: ignore[assignment]
            return self._execute_local(run_id, start, end)
        from entity_etl.orchestration.batch.provider_job import execute_inside_task

        self.job_name = batch_job_name(self.entity, self.stage, run_id)
        self.job_id = None
        with lease_kept_alive(self.entity, self._lease_owner, self.log) as epoch:
            self.container_overrides = container_overrides(
                self.compute,
                stage_command(self.entity, self.stage, run_id, start, end),
                run_env={
                    "ETL_LEASE_OWNER": self._lease_owner,
                    "ETL_LEASE_EPOCH": "" if epoch is None else str(epoch),
                    "ETL_ATTEMPT": str(self._attempt or ""),
                },
            )
            job = self._new_batch_job()
            try:  # raises TaskDeferred (a BaseException) when it defers; returns once the job succeeded
                execute_inside_task(job, context)
            except Exception as exc:
                raise self._batch_failure(exc, run_id, job.job_id) from exc
            finally:
                self.job_id = job.job_id
        return self._warn(read_job_stats(self.entity, self.stage, run_id, self.job_id, self.log))

    def _warn(self, stats: Any) -> Any:
        """Repeat a stage's warning (an extract with no rows) in the task log, whichever backend ran it."""
        details = stats.get("details") if isinstance(stats, dict) else None
        if isinstance(details, dict) and details.get("warning"):
            self.log.warning("%s: %s: %s", self.entity, self.stage, details["warning"])
        return stats

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        run_id = str(context["run_id"])
        self._attempt = int(context["ti"].try_number) if context.get("ti") is not None else None
        job = self._new_batch_job()
        try:
            job.execute_complete(context, event)
        except Exception as exc:
            raise self._batch_failure(exc, run_id, job.job_id) from exc
        finally:
            self.job_id = job.job_id
        return self._warn(read_job_stats(self.entity, self.stage, run_id, self.job_id, self.log))

    def on_kill(self) -> None:
        if self._batch_job is not None:  # terminates the Batch job, as BatchOperator.on_kill does
            self._batch_job.on_kill()

    # -- local ------------------------------------------------------------------------------------
    def _execute_local(self, run_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        from entity_etl.runtime.context import build_context
        from entity_etl.runtime.stages import run_stage

        ctx = build_context(
            entity=self.entity,
            run_id=run_id,
            interval_start=start,
            interval_end=end,
            resolver=airflow_connection,
            lease_owner=self._lease_owner,
            attempt=self._attempt,
        )
        stats = run_stage(ctx, self.stage)
        self.log.info("stage statistics: %s", stats.to_json())
        return self._warn(stats.to_dict())

    # -- batch ------------------------------------------------------------------------------------
    def _new_batch_job(self) -> StageBatchJob:
        """The provider's ``BatchOperator`` for this task, with this task's (rendered) Batch arguments."""
        from entity_etl.orchestration.batch.provider_job import build_stage_job

        self._batch_job = build_stage_job(self)
        return self._batch_job

    def _batch_failure(self, exc: Exception, run_id: str, job_id: str | None) -> Exception:
        return explain_failure(
            exc, entity=self.entity, stage=self.stage, run_id=run_id, job_id=job_id, attempt=self._attempt, log=self.log
        )
