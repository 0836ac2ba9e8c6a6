"""What an Amazon MWAA container sees, run in a subprocess inside an MWAA-like ``AIRFLOW_HOME``.

    AIRFLOW_HOME=<home> python tests/support/mwaa_probe.py dagbag|batch

``<home>/dags`` is the DAGs folder as MWAA syncs it from S3 and ``<home>/plugins`` is plugins.zip
unzipped, as on MWAA; the environment holds what startup.sh exports. Only the standard library,
Airflow and boto3 are used: it also runs in the separate venv with MWAA's pins, where neither this
repository nor pytest is installed. It prints one JSON object on stdout.

* ``dagbag``: the plugin manager's view of the plugins folder, the triggerer's import of the Deadline
  Alert callback (with no DAGs folder on ``sys.path``), then the DAG processor's parse of the DAGs
  folder (``BundleDagBag``, as the DAG processor and the task runner build it).
* ``batch``: the ``extract`` task of ``etl_de``, taken from that parse, run on the ``batch`` backend
  against the moto server at ``AWS_ENDPOINT_URL``: the installed amazon provider's ``BatchOperator``
  submits and monitors the job.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HOME = Path(os.environ["AIRFLOW_HOME"])
DAGS = HOME / "dags"
PLUGINS = HOME / "plugins"


def _hide_checkout() -> None:
    """Drop the developer checkout's paths (an editable install of the package, the repo root)."""
    hidden = {Path(p).resolve() for p in os.environ.get("MWAA_PROBE_HIDE", "").split(os.pathsep) if p}
    sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() not in hidden]


def _under(path: str | None, folder: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(folder.resolve())


def _versions() -> dict[str, str | None]:
    names = (
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-mysql",
        "mysqlclient",
        "boto3",
    )
    found: dict[str, str | None] = {"python": ".".join(map(str, sys.version_info[:3]))}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def parse_dags() -> Any:
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(
        dag_folder=str(DAGS), safe_mode=True, load_op_links=False, bundle_path=DAGS, bundle_name="dags-folder"
    )


def probe_dagbag() -> dict[str, Any]:
    import airflow  # settings.initialize(): AIRFLOW_HOME/plugins goes on sys.path, as in every MWAA process

    report: dict[str, Any] = {"versions": _versions(), "airflow_file": airflow.__file__}
    report["dags_folder_on_path_before_parse"] = any(p and Path(p).resolve() == DAGS.resolve() for p in sys.path)

    from airflow import plugins_manager

    before = set(sys.modules)
    plugins_manager.ensure_plugins_loaded()
    report["plugin_import_errors"] = plugins_manager.get_import_errors()
    report["plugin_names"] = sorted(str(p.name) for p in plugins_manager._get_plugins()[0])
    # Modules the plugin manager ran from the plugins folder (it names them after their file).
    report["modules_run_as_plugins"] = sorted(
        name for name in set(sys.modules) - before if _under(getattr(sys.modules[name], "__file__", None), PLUGINS)
    )

    # The triggerer: the Deadline Alert callback, by import path (CallbackTrigger -> import_string).
    from airflow._shared.module_loading import import_string

    notifier = import_string("entity_etl.orchestration.notifier.SnsEventNotifier")
    report["callback_import"] = f"{notifier.__module__}.{notifier.__qualname__}"

    bag = parse_dags()
    report["dag_ids"] = sorted(bag.dag_ids)
    report["import_errors"] = {str(k): str(v) for k, v in bag.import_errors.items()}
    report["tasks"] = {dag_id: sorted(bag.dags[dag_id].task_dict) for dag_id in sorted(bag.dag_ids)}

    import entity_etl
    import entity_etl.survey_reader as responses

    report["entity_etl_file"] = entity_etl.__file__
    report["entity_etl_from_plugins"] = _under(entity_etl.__file__, PLUGINS)
    report["survey_reader_file"] = responses.__file__
    report["survey_reader_from_plugins"] = _under(responses.__file__, PLUGINS)
    from entity_etl.config.loader import default_paths

    report["entities_dir"], report["sql_dir"] = (str(p) for p in default_paths())
    report["batch_surface_differences"] = batch_surface_differences()
    return report


def batch_surface_differences() -> dict[str, Any]:
    """Where ``batch/surface.py`` (what the stage task shows Airflow) differs from the installed
    provider's ``BatchOperator``: template fields, their renderers, links and ``__init__`` arguments."""
    import inspect

    from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
    from airflow.providers.amazon.aws.operators.batch import BatchOperator

    from entity_etl.orchestration.batch import surface

    arguments = set(inspect.signature(BatchOperator.__init__).parameters)
    arguments |= set(inspect.signature(AwsBaseOperator.__init__).parameters)
    arguments -= {"self", "kwargs"}
    differences: dict[str, Any] = {}
    if tuple(BatchOperator.template_fields) != surface.TEMPLATE_FIELDS:
        differences["template_fields"] = [list(BatchOperator.template_fields), list(surface.TEMPLATE_FIELDS)]
    if dict(BatchOperator.template_fields_renderers) != surface.TEMPLATE_FIELDS_RENDERERS:
        differences["renderers"] = [dict(BatchOperator.template_fields_renderers), surface.TEMPLATE_FIELDS_RENDERERS]
    links = [type(link).__name__ for link in BatchOperator.operator_extra_links]
    if links != [type(link).__name__ for link in surface.OPERATOR_EXTRA_LINKS]:
        differences["links"] = links
    if arguments != set(surface.ARGUMENTS):
        differences["arguments"] = {
            "provider_only": sorted(arguments - set(surface.ARGUMENTS)),
            "surface_only": sorted(set(surface.ARGUMENTS) - arguments),
        }
    return differences


def probe_batch() -> dict[str, Any]:
    """The extract task of etl_de on the batch backend, against moto; what AWS Batch received."""
    import boto3
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

    BatchClientHook.DEFAULT_DELAY_MIN = 0
    BatchClientHook.DEFAULT_DELAY_MAX = 0
    BatchClientHook.exponential_delay = staticmethod(lambda tries: 0)  # type: ignore[method-assign,assignment]

    region, bucket, queue, definition = "eu-west-1", "etl-objects", "etl-fargate", "etl-stage"
    iam, ec2, batch, s3 = (boto3.client(name, region_name=region) for name in ("iam", "ec2", "batch", "s3"))
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    role = iam.create_role(RoleName="etl-batch-service", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="etl-batch", Description="etl batch", VpcId=vpc)["GroupId"]
    environment = batch.create_compute_environment(
        computeEnvironmentName="etl-fargate-ce",
        type="MANAGED",
        state="ENABLED",
        computeResources={"type": "FARGATE", "maxvCpus": 16, "subnets": [subnet], "securityGroupIds": [sg]},
        serviceRole=role,
    )
    batch.create_job_queue(
        jobQueueName=queue,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}],
    )
    batch.register_job_definition(
        jobDefinitionName=definition,
        type="container",
        platformCapabilities=["FARGATE"],
        containerProperties={
            "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/entity-etl:latest",
            "command": ["etlctl", "--help"],
            "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}],
            "executionRoleArn": role,
            "networkConfiguration": {"assignPublicIp": "ENABLED"},
        },
    )
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})

    import airflow  # noqa: F401 - puts the plugins folder on sys.path

    task = parse_dags().dags["etl_de"].task_dict["extract"]
    run_id = "scheduled__2026-11-02T00:00:00+00:00"
    start = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)

    class TaskInstance:
        try_number = 1

        def __init__(self) -> None:
            self.xcom: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcom[key] = value

    ti = TaskInstance()
    context = {
        "dag": SimpleNamespace(dag_id="etl_de"),
        "run_id": run_id,
        "data_interval_start": start,
        "data_interval_end": start + dt.timedelta(days=1),
        "logical_date": start,
        "ti": ti,
    }
    result = task.execute(context)
    (job,) = batch.describe_jobs(jobs=[task.job_id])["jobs"]
    return {
        "versions": _versions(),
        "result": result,
        "job": {
            "jobName": job["jobName"],
            "status": job["status"],
            "jobQueue": job["jobQueue"],
            "command": job["container"]["command"],
            "environment": {e["name"]: e["value"] for e in job["container"].get("environment", [])},
        },
        "xcom_keys": sorted(ti.xcom),
    }


def main() -> int:
    _hide_checkout()
    mode = sys.argv[1]
    report = probe_dagbag() if mode == "dagbag" else probe_batch()
    print("MWAA-PROBE " + json.dumps(report, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
