"""``EntityStageOperator`` is a light ``BaseOperator`` at parse time that presents the provider's
``BatchOperator`` surface. These tests hold that surface to the installed provider: the template fields,
renderers, links, arguments and defaults, the serialized task, and the arguments the Batch job gets.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import subprocess
import sys
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.sdk import DAG

from entity_etl.config.model import ComputeConfig
from entity_etl.orchestration.batch import surface
from entity_etl.orchestration.stage_operator import EntityStageOperator
from support.entity_files import ROOT

COMPUTE = ComputeConfig(job_queue="q-1", job_definition="def-1")


def batch_signature() -> dict[str, inspect.Parameter]:
    params = {
        **inspect.signature(AwsBaseOperator.__init__).parameters,
        **inspect.signature(BatchOperator.__init__).parameters,
    }
    return {name: p for name, p in params.items() if name not in ("self", "kwargs")}


def test_the_surface_is_the_installed_batch_operators() -> None:
    assert tuple(BatchOperator.template_fields) == surface.TEMPLATE_FIELDS
    assert EntityStageOperator.template_fields == (*BatchOperator.template_fields, "entity", "stage")
    assert BatchOperator.template_fields_renderers == surface.TEMPLATE_FIELDS_RENDERERS
    assert [type(link) for link in EntityStageOperator.operator_extra_links] == [
        type(link) for link in BatchOperator.operator_extra_links
    ]
    assert set(surface.ARGUMENTS) == set(batch_signature())


def test_unset_arguments_default_as_in_batch_operator() -> None:
    for name, param in batch_signature().items():
        if name in ("job_name", "job_definition", "job_queue", "region"):
            continue  # required, or deprecated without a default
        if name in ("parameters", "tags"):  # None in the signature, {} on the operator
            assert getattr(EntityStageOperator(task_id="t", entity="e", stage="s", compute=COMPUTE), name) == {}
            continue
        assert getattr(EntityStageOperator, name) == param.default, name


def _dag(dag_id: str, default_args: dict[str, Any] | None = None) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        default_args={"owner": "data-platform", "retries": 2, **(default_args or {})},
    )


def _serialized_task(dag: DAG) -> dict[str, Any]:
    from airflow.serialization.serialized_objects import DagSerialization

    (task,) = DagSerialization.to_dict(dag)["dag"]["tasks"]
    return json.loads(json.dumps(task["__var"], default=str))


def test_the_stage_task_serializes_as_a_batch_operator_task_would() -> None:
    """What the DAG processor stores (and the UI reads): the same as a BatchOperator subclass would give."""
    ours = _dag("ours")
    EntityStageOperator(task_id="extract", entity="de", stage="extract", compute=COMPUTE, dag=ours, doc_md="x")
    reference = _dag("reference")
    BatchOperator(
        task_id="extract",
        job_name="etl-de-extract",
        job_definition="def-1",
        job_queue="q-1",
        dag=reference,
        doc_md="x",
    )
    mine, theirs = _serialized_task(ours), _serialized_task(reference)
    assert mine.pop("task_type") == "EntityStageOperator"
    assert mine.pop("_task_module") == "entity_etl.orchestration.stage_operator"
    assert mine.pop("ui_color") == "#e8f4fa"
    assert mine.pop("template_fields") == [*theirs.pop("template_fields"), "entity", "stage"]
    assert (mine.pop("entity"), mine.pop("stage")) == ("de", "extract")
    for key in ("task_type", "_task_module", "ui_color"):
        theirs.pop(key, None)
    assert mine == theirs
    assert "_operator_extra_links" in mine and "Batch Job Details" in mine["_operator_extra_links"]


def test_batch_arguments_and_default_args_reach_the_batch_job() -> None:
    """Arguments given to the task, or in the DAG's default_args, reach the provider's operator as before."""
    default_args = {"region_name": "eu-central-1", "poll_interval": 7, "job_queue": "ignored: the entity's wins"}
    op = EntityStageOperator(
        task_id="dedupe",
        entity="de",
        stage="dedupe",
        compute=COMPUTE,
        dag=_dag("args", default_args),
        status_retries=3,
        aws_conn_id="aws_etl",
        tags={"team": "data"},
        deferrable=True,
    )
    reference = BatchOperator(
        task_id="dedupe",
        dag=_dag("reference_args", default_args),
        job_name="etl-de-dedupe",
        job_definition="def-1",
        job_queue="q-1",
        status_retries=3,
        aws_conn_id="aws_etl",
        tags={"team": "data"},
        deferrable=True,
    )
    job = op._new_batch_job()
    for name in batch_signature():
        if name != "region":
            assert getattr(job, name) == getattr(reference, name) == getattr(op, name), name
    assert (job.task_id, job.do_xcom_push, job.execution_timeout) == (op.task_id, op.do_xcom_push, op.execution_timeout)
    assert job.log.name == op.log.name  # its log lines read as the task's
    assert not job.has_dag()  # a tool of the task, not a task of the DAG
    assert list(op.dag.task_ids) == ["dedupe"]


def test_parsing_the_entity_dag_files_does_not_import_the_providers_batch_operator() -> None:
    """The provider's operator module pulls in boto3: a parse has no use for it (bench/README.md)."""
    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "for name in ('etl_config_errors.py', 'etl_entities.py'):\n"
        f"    bag = DagBag(dag_folder={str(ROOT / 'dags')!r} + '/' + name, safe_mode=True)\n"
        "    assert bag.import_errors == {}, bag.import_errors\n"
        "print(len(bag.dag_ids), sorted(m for m in ('boto3', 'airflow.providers.amazon.aws.operators.batch') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "3 []"
