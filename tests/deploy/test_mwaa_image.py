"""Amazon MWAA on its real package set: a Python 3.12 venv built as MWAA's Airflow 3.3.1 image.

1. The image: its build's package list under its constraints (``deploy/mwaa/image/``, vendored),
   checked against the image's bill of materials (``image-python-packages.txt``).
2. ``deploy/mwaa/requirements.txt`` installed as MWAA does: its constraint URL mapped to the vendored
   file, MWAA's essential pins on top. It must bring the mysql provider and mysqlclient at the
   constrained versions and change no version the image holds.
3. The deployed layout (``dags/`` prefix from the bucket, plugins.zip unpacked, the variables
   ``startup.sh`` exports) parsed by the DAG processor in that venv, and one stage run through its
   amazon provider's ``BatchOperator`` against a moto server.

Under ``CI=true`` a missing uv or Python 3.12 fails; a missing vendored file always fails.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from support.entity_files import write_entity
from support.mwaa_image import (
    BOM_OMITS,
    CONSTRAINTS,
    ESSENTIAL,
    IMAGE_PACKAGES,
    VENV,
    MwaaVenv,
    build_image_venv,
    find_python312,
    find_uv,
    read_pins,
)
from support.mwaa_layout import (
    BUCKET,
    MWAA,
    REGION,
    check_mwaa_view,
    copy_deployed_sources,
    deploy_quietly,
    mwaa_home,
    run_probe,
)
from support.servers import IN_CI, MotoServer

pytestmark = [pytest.mark.moto, pytest.mark.slow]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> MwaaVenv:
    uv, python = find_uv(), find_python312()
    if uv is None or python is None:
        missing = "uv" if uv is None else "a Python 3.12 (python3.12, ~/.pyenv/versions/3.12*/bin/python3.12)"
        if IN_CI:
            pytest.fail(f"the MWAA image test needs {missing} (CI=true: this test never skips)")
        pytest.skip(f"the MWAA image test needs {missing}")
    started = time.monotonic()
    built = build_image_venv(uv, python, MWAA / "requirements.txt", tmp_path_factory.mktemp("mwaa-venv"))
    how = "reused (cached)" if built.reused else "built"
    steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in built.seconds.items())
    print(f"\nMWAA 3.3.1 venv {how} in {time.monotonic() - started:.0f} s (when built: {steps}) from {python}")
    return built


@pytest.fixture
def s3(aws: MotoServer) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_deployed_sources(tmp_path / "repo")


def test_the_venv_holds_what_mwaas_image_holds(venv: MwaaVenv) -> None:
    bom, constraints = read_pins(IMAGE_PACKAGES), read_pins(CONSTRAINTS)
    # Every distribution of the image, at the image's version wherever the constraints pin it.
    assert sorted(set(bom) - set(venv.image)) == []
    pinned = {name for name in bom if name in constraints}
    assert {n: venv.image[n] for n in pinned} == {n: bom[n] for n in pinned}
    assert {n: constraints[n] for n in pinned} == {n: bom[n] for n in pinned}
    floating = {n: (bom[n], venv.image[n]) for n in set(bom) - pinned if bom[n] != venv.image[n]}
    print(f"not pinned by the constraints, image vs here: {floating}")
    # Nothing beyond the image but the distributions its bill of materials leaves out.
    assert set(venv.image) - set(bom) == BOM_OMITS
    assert "apache-airflow-providers-mysql" not in venv.image and "mysqlclient" not in venv.image


def test_requirements_txt_brings_the_mysql_provider_and_changes_nothing_of_the_image(venv: MwaaVenv) -> None:
    constraints, essential = read_pins(CONSTRAINTS), read_pins(ESSENTIAL)
    for name in ("apache-airflow-providers-mysql", "mysqlclient"):
        assert venv.installed[name] == constraints[name], name
    assert venv.installed["apache-airflow-providers-mysql"] == "6.6.1"
    assert venv.installed["mysqlclient"] == "2.2.8"
    # The user's requirements replace no version the image holds, and MWAA's essential pins hold.
    assert {n: v for n, v in venv.installed.items() if n in venv.image} == venv.image
    assert {n: venv.installed[n] for n in essential if n in venv.installed} == {
        n: v for n, v in essential.items() if n in venv.installed
    }
    assert {"apache-airflow", "flask", "sqlalchemy", "celery"} <= set(essential) & set(venv.installed)
    # Everything new is at the constraints' pin where they have one (matplotlib and its own are not pinned).
    added = set(venv.installed) - set(venv.image)
    assert {n: venv.installed[n] for n in added if n in constraints} == {
        n: constraints[n] for n in added if n in constraints
    }
    assert "matplotlib" in added


def test_the_deployed_layout_loads_and_a_batch_stage_runs_on_mwaas_package_set(
    venv: MwaaVenv, s3: Any, repo: Path, tmp_path: Path, aws: MotoServer
) -> None:
    deploy_quietly(repo)
    write_entity(repo / "include", "nz")
    deploy_quietly(repo)
    home, startup_env = mwaa_home(s3, tmp_path / "mwaa")
    assert startup_env == {"ETL_INCLUDE_DIR": str(home / "dags/include")}

    report = run_probe(str(venv.python), "dagbag", home, startup_env, tmp_path)
    assert report["versions"]["python"].startswith("3.12.")
    assert report["versions"]["apache-airflow"] == "3.3.1"
    assert report["versions"]["apache-airflow-providers-amazon"] == "9.34.0"
    assert report["versions"]["apache-airflow-providers-mysql"] == "6.6.1"
    assert report["versions"]["mysqlclient"] == "2.2.8"
    assert report["airflow_file"].startswith(str(VENV))
    check_mwaa_view(report, home)
    # What the stage task shows Airflow is amazon 9.34.0's BatchOperator, field for field.
    assert report["batch_surface_differences"] == {}

    aws_env = {
        name: os.environ[name]
        for name in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
        )
    }
    batch_env = {
        **startup_env,
        **aws_env,
        "ETL_COMPUTE_BACKEND": "batch",
        "ETL_OBJECT_STORE_URL": "s3://etl-objects/stage-runs",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
    }
    ran = run_probe(str(venv.python), "batch", home, batch_env, tmp_path)
    run_id = "scheduled__2026-11-02T00:00:00+00:00"
    assert ran["job"]["status"] == "SUCCEEDED"
    assert ran["job"]["jobName"].startswith("etl-de-extract-")
    assert ran["job"]["jobQueue"].endswith(":job-queue/etl-fargate")
    assert ran["job"]["command"] == [
        "etlctl", "run-stage", "--entity", "de", "--stage", "extract", "--run-id", run_id,
        "--interval-start", "2026-11-02T00:00:00+00:00", "--interval-end", "2026-11-03T00:00:00+00:00",
    ]  # fmt: skip
    assert ran["job"]["environment"]["ETL_OBJECT_STORE_URL"] == "s3://etl-objects/stage-runs"
    assert ran["job"]["environment"]["ETL_LEASE_OWNER"] == f"etl_de/{run_id}"
    assert ran["result"]["job_id"]
    assert "batch_job_details" in ran["xcom_keys"]
