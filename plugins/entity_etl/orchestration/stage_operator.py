"""``EntityStageOperator``: one stage of one entity run, on the backend the deployment chooses.

It *is* the amazon provider's ``BatchOperator`` (Fargate), so the ``batch`` backend gets its job
monitoring, log links and deferral for free; with the ``local`` backend it runs the same stage code
in the worker instead. Either way the stage statistics are returned, so they land in XCom.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
from airflow.providers.amazon.aws.operators.batch import BatchOperator

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.backend import compute_backend
from entity_etl.orchestration.batch_job import batch_job_name, container_overrides, stage_command
from entity_etl.orchestration.lease_tasks import lease_owner
from entity_etl.runtime.connections import ConnectionInfo

ACTIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")


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


class EntityStageOperator(BatchOperator):
    template_fields: Sequence[str] = (*BatchOperator.template_fields, "entity", "stage")
    ui_color = "#e8f4fa"

    def __init__(self, *, entity: str, stage: str, compute: ComputeConfig, **kwargs: Any) -> None:
        kwargs.setdefault("job_name", f"etl-{entity}-{stage}")  # replaced per run in execute()
        kwargs.setdefault("job_definition", compute.job_definition)
        kwargs.setdefault("job_queue", compute.job_queue)
        super().__init__(**kwargs)
        self.entity = entity
        self.stage = stage
        self.compute = compute
        self.backend: str | None = None
        self._lease_owner: str | None = None
        self._attempt: int | None = None

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
        self.job_name = batch_job_name(self.entity, self.stage, run_id)
        self.container_overrides = container_overrides(
            self.compute,
            stage_command(self.entity, self.stage, run_id, start, end),
            run_env={"ETL_LEASE_OWNER": self._lease_owner, "ETL_ATTEMPT": str(self._attempt or "")},
        )
        self.job_id = None
        super().execute(context)  # raises TaskDeferred when it defers; returns once the job succeeded
        return self._batch_stats(run_id, start, end)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        super().execute_complete(context, event)
        start, end = self._interval(context)
        return self._batch_stats(str(context["run_id"]), start, end)

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
    def submit_job(self, context: Any) -> None:
        """Attach to a still-active job of the same (entity, stage, run) instead of submitting twice."""
        client: Any = self.hook.client
        response = client.list_jobs(jobQueue=self.job_queue, filters=[{"name": "JOB_NAME", "values": [self.job_name]}])
        active = [j for j in response.get("jobSummaryList", []) if j.get("status") in ACTIVE_STATES]
        if active:
            newest = max(active, key=lambda j: j.get("createdAt", 0))
            self.job_id = newest["jobId"]
            self.log.info(
                "AWS Batch job %s (%s) is still %s: monitoring it instead of submitting again",
                self.job_name,
                self.job_id,
                newest.get("status"),
            )
            BatchJobDetailsLink.persist(  # as BatchOperator.submit_job does for a job it submits
                context=context,
                operator=self,
                region_name=self.hook.conn_region_name,
                aws_partition=self.hook.conn_partition,
                job_id=self.job_id,
            )
            return
        super().submit_job(context)

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
