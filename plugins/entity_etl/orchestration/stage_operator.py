"""``EntityStageOperator``: one stage of one entity run, on the backend the deployment chooses.

With the ``batch`` backend the stage runs as an AWS Batch (Fargate) job through the amazon provider's
``BatchOperator`` (:class:`~entity_etl.orchestration.batch_stage_job.StageBatchJob`), so job monitoring,
log links and deferral come from the provider. With the ``local`` backend it runs the same stage code in
the worker instead. Either way the stage statistics are returned, so they land in XCom.

Every parse of the DAG file builds this operator 5 or 6 times per entity, but a task executes it once.
So it is a plain ``BaseOperator`` that presents the ``BatchOperator`` surface to Airflow: the same
template fields, renderers, console links, keyword arguments and defaults, and the same serialized task.
It builds the ``BatchOperator`` only in ``execute``. Subclassing ``BatchOperator`` meant four nested
``apply_defaults`` layers per task, plus the provider's boto3 imports on every parse. That came to 0.6 to
0.9 s of a 1,000-entity parse (bench/README.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration import batch_operator_surface as surface
from entity_etl.orchestration.backend import compute_backend
from entity_etl.orchestration.batch_job import batch_job_name, container_overrides, stage_command
from entity_etl.orchestration.lease_tasks import lease_owner
from entity_etl.runtime.connections import ConnectionInfo

if TYPE_CHECKING:
    from entity_etl.orchestration.batch_stage_job import StageBatchJob

ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
#: AWS Batch's largest array job.
MAX_ARRAY_SIZE = 10_000


def airflow_connection(conn_id: str) -> ConnectionInfo:
    """Resolve ``conn_id`` through Airflow (env, secrets backends, the metadata DB)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=str(conn.conn_type or ""),
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        extra=dict(conn.extra_dejson or {}),
    )


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
        if stage == "extract" and partitions > 1:
            if not 2 <= partitions <= MAX_ARRAY_SIZE:
                raise ValueError(f"{entity}: extract: {partitions} partitions; AWS Batch arrays hold 2 to 10,000")
            batch.setdefault("array_properties", {"size": partitions})
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
        from entity_etl.orchestration.batch_stage_job import execute_inside_task

        self.job_name = batch_job_name(self.entity, self.stage, run_id)
        self.job_id = None
        with self._lease_kept_alive() as epoch:
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
        return self._batch_stats(run_id, start, end)

    @contextlib.contextmanager
    def _lease_kept_alive(self) -> Iterator[int | None]:
        """Renew this run's entity lease while the task waits for its Batch job (which may sit in the
        queue for longer than the lease lives); the container renews it too once it runs. Yields the
        lease's epoch, which the job gets as ``ETL_LEASE_EPOCH`` (its fencing token must be that one).

        Best effort: if this run does not hold the lease, the container's own check fails the stage,
        naming the holder. A deferred task waits in the triggerer, where nothing renews it.
        """
        from entity_etl.runtime.lease import LeaseKeeper, LeaseLostError, open_lease_store

        with contextlib.ExitStack() as stack:
            epoch = None
            if self._lease_owner:
                try:
                    keeper = stack.enter_context(
                        LeaseKeeper(open_lease_store(), self.entity, self._lease_owner, owner_holds_already=True)
                    )
                    epoch = keeper.epoch
                except (LeaseLostError, OSError, RuntimeError) as exc:
                    self.log.warning("the entity lease is not renewed while the job waits: %s", exc)
            yield epoch

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
        start, end = self._interval(context)
        return self._batch_stats(run_id, start, end)

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
        return stats.to_dict()

    # -- batch ------------------------------------------------------------------------------------
    def _new_batch_job(self) -> StageBatchJob:
        """The provider's ``BatchOperator`` for this task, with this task's (rendered) Batch arguments."""
        from entity_etl.orchestration.batch_stage_job import StageBatchJob, accepted_arguments

        accepted = accepted_arguments()
        arguments = {
            name: getattr(self, name) for name in surface.ARGUMENTS if name in accepted and hasattr(self, name)
        }
        self._batch_job = StageBatchJob(
            task_id=self.task_id,
            do_xcom_push=self.do_xcom_push,
            execution_timeout=self.execution_timeout,
            logger_name=self._logger_name or f"{type(self).__module__}.{type(self).__name__}",
            **arguments,
        )
        return self._batch_job

    def _batch_failure(self, exc: Exception, run_id: str, job_id: str | None) -> Exception:
        """The task's error for a failed Batch job: the stage's own one-line error from the run store,
        else what AWS Batch says (status reason, exit code), which is then recorded as the stage's
        failure, since a container that died (out of memory, image pull, SIGKILL) recorded nothing."""
        from airflow.sdk.exceptions import AirflowException

        from entity_etl.orchestration.notifier import batch_failure_details
        from entity_etl.runtime.run_store import StageRecord, StaleUpdateError, now_iso, open_run_store

        if not job_id:  # not submitted (a bad queue, no permission): the provider's error says it all
            return exc
        try:
            store = open_run_store()
            record = store.get(self.entity, run_id, self.stage)
        except Exception as lookup:  # the explanation is best effort; the failure stands
            self.log.warning("could not read the run store: %s: %s", type(lookup).__name__, lookup)
            return exc
        attempt = self._attempt or (record.attempt if record else 1)
        if record is not None and record.status == "failed" and record.attempt == attempt and record.error:
            why = record.error
        else:
            try:
                details = batch_failure_details(job_id)
            except Exception as lookup:
                self.log.warning("could not describe AWS Batch job %s: %s", job_id, lookup)
                details = {}
            reasons = [str(details[k]) for k in ("statusReason", "containerReason") if details.get(k)]
            if details.get("exitCode") is not None:
                reasons.append(f"exit code {details['exitCode']}")
            why = (
                f"{self.entity}: {self.stage}: AWS Batch job {job_id} failed: {'; '.join(reasons) or 'no reason given'}"
            )
            with contextlib.suppress(StaleUpdateError):  # the store may hold a later state of this stage
                store.put(
                    StageRecord(
                        self.entity,
                        run_id,
                        self.stage,
                        "failed",
                        attempt=attempt,
                        started_at=record.started_at if record and record.attempt == attempt else now_iso(),
                        ended_at=now_iso(),
                        stats=record.stats if record and record.attempt == attempt else {},
                        error=why,
                        batch_job_id=job_id,
                        log_url=str(details.get("logUrl") or ""),
                    )
                )
        return AirflowException(f"{why} [{exc}]")

    def _batch_stats(self, run_id: str, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        from entity_etl.runtime.context import build_context

        ctx = build_context(
            entity=self.entity, run_id=run_id, interval_start=start, interval_end=end, resolver=airflow_connection
        )
        try:
            stats: dict[str, Any] = json.loads(ctx.store.get_bytes(ctx.stats_key(self.stage)))
        except FileNotFoundError:
            self.log.warning(
                "job %s succeeded but wrote no statistics at %s", self.job_id, ctx.store.uri(ctx.stats_key(self.stage))
            )
            return {"entity": self.entity, "stage": self.stage, "run_id": run_id, "job_id": self.job_id}
        stats["job_id"] = self.job_id
        return stats
