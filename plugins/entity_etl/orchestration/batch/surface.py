"""What the amazon provider's ``BatchOperator`` shows Airflow, written out so that parsing does not import it.

``EntityStageOperator`` presents this at parse time: the template fields, their renderers, the console
links and the keyword arguments. When a stage runs on AWS Batch, it hands those arguments to a real
``BatchOperator``. The operator's own defaults are class attributes of ``EntityStageOperator``.

Why it is written out: importing ``airflow.providers.amazon.aws.operators.batch`` pulls in boto3 and the
provider's hooks. That costs about 0.35 s on every parse of the DAG file (bench/README.md), and a parse
never uses them. The links module is light, so the link classes are imported from the provider.
``tests/test_stage_operator.py`` checks every value here against the installed provider.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.links.batch import BatchJobDefinitionLink, BatchJobDetailsLink, BatchJobQueueLink
from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink

#: ``BatchOperator.template_fields``: its own fields and ``AwsBaseOperator``'s, sorted by name.
TEMPLATE_FIELDS: tuple[str, ...] = (
    "array_properties",
    "aws_conn_id",
    "awslogs_enabled",
    "awslogs_fetch_interval",
    "container_overrides",
    "ecs_properties_override",
    "eks_properties_override",
    "job_definition",
    "job_id",
    "job_name",
    "job_queue",
    "node_overrides",
    "parameters",
    "region_name",
    "retry_strategy",
    "tags",
    "verify",
    "wait_for_completion",
    "waiters",
)

#: ``BatchOperator.template_fields_renderers``.
TEMPLATE_FIELDS_RENDERERS: dict[str, str] = {
    "container_overrides": "json",
    "parameters": "json",
    "ecs_properties_override": "json",
    "eks_properties_override": "json",
    "node_overrides": "json",
    "retry_strategy": "json",
}

#: ``BatchOperator.operator_extra_links``: the Batch console links and the CloudWatch log link.
OPERATOR_EXTRA_LINKS = (
    BatchJobDetailsLink(),
    BatchJobDefinitionLink(),
    BatchJobQueueLink(),
    CloudWatchEventsLink(),
)

#: The keyword arguments of ``BatchOperator.__init__`` and of its base, ``AwsBaseOperator.__init__``.
#: ``region`` is deprecated and has no default.
ARGUMENTS: tuple[str, ...] = (
    "job_name",
    "job_definition",
    "job_queue",
    "container_overrides",
    "array_properties",
    "ecs_properties_override",
    "eks_properties_override",
    "node_overrides",
    "share_identifier",
    "scheduling_priority_override",
    "parameters",
    "retry_strategy",
    "job_id",
    "waiters",
    "max_retries",
    "status_retries",
    "tags",
    "wait_for_completion",
    "deferrable",
    "poll_interval",
    "awslogs_enabled",
    "awslogs_fetch_interval",
    "submit_job_timeout",
    "aws_conn_id",
    "region_name",
    "verify",
    "botocore_config",
    "region",
)
