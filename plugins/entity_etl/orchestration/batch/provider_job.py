"""``StageBatchJob``: the amazon provider's ``BatchOperator`` that runs one stage as an AWS Batch job.

``EntityStageOperator`` builds one only when a stage runs on the ``batch`` backend, never at parse time.
Job submission, monitoring, console and log links and deferral are therefore the provider's. The one
change is in ``submit_job``: a retry attaches to a still-active job of the same (entity, stage, run)
instead of submitting a second one.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any

from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook
from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.sdk.bases.operator import ExecutorSafeguard

from entity_etl.orchestration.batch import surface

#: The job states in which AWS Batch may still run a job: the provider's own list.
ACTIVE_STATES: tuple[str, ...] = tuple(BatchClientHook.INTERMEDIATE_STATES)


class StageBatchJob(BatchOperator):
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


@functools.cache
def accepted_arguments() -> frozenset[str]:
    """The keyword arguments that the installed provider's ``BatchOperator`` takes, base class included."""
    names = set(inspect.signature(BatchOperator.__init__).parameters)
    names |= set(inspect.signature(AwsBaseOperator.__init__).parameters)
    return frozenset(names - {"self", "kwargs"})


def build_stage_job(task: Any) -> StageBatchJob:
    """The provider's ``BatchOperator`` for the stage task ``task``, with its (rendered) Batch arguments."""
    accepted = accepted_arguments()
    arguments = {name: getattr(task, name) for name in surface.ARGUMENTS if name in accepted and hasattr(task, name)}
    return StageBatchJob(
        task_id=task.task_id,
        do_xcom_push=task.do_xcom_push,
        execution_timeout=task.execution_timeout,
        logger_name=task._logger_name or f"{type(task).__module__}.{type(task).__name__}",
        **arguments,
    )


def execute_inside_task(job: StageBatchJob, context: Any) -> Any:
    """``job.execute(context)``, called the way the task runner calls a task's ``execute``.

    Airflow warns when one operator's ``execute`` runs inside another's ("cannot be called outside of the
    Task Runner!"). Here that nesting is by design: the stage task uses the ``BatchOperator`` as a tool.
    So the safeguard's tracker is set to ``job`` in a copied context, as the task runner does for the task
    (``_run_execute_callable``).
    """
    ctx = contextvars.copy_context()
    ctx.run(ExecutorSafeguard.tracker.set, job)
    return ctx.run(job.execute, context)
