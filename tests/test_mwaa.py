"""Amazon MWAA packaging (deploy/mwaa/): the S3 layout, what needs an environment update, and what MWAA sees.

* The deploy script against a real moto S3 server: the exact objects, a second deploy that uploads
  nothing, a new entity that is exactly its YAML and SQL file and needs no environment update, a
  code change that does, dry runs, stale files, and buckets whose ETags are not MD5s (SSE-KMS).
* The MWAA container's view: the ``dags/`` prefix downloaded from moto into an MWAA-like
  ``AIRFLOW_HOME``, plugins.zip unzipped into its ``plugins/``, the variables startup.sh exports; the
  plugin manager, the triggerer's import of the Deadline Alert callback and the DAG processor's parse,
  in a subprocess where this checkout is not importable (``tests/support/mwaa_probe.py``).
* requirements.txt against MWAA 3.3.1's image data vendored in ``deploy/mwaa/image/``. The same
  view in a venv built as that image, with a Batch stage through its amazon provider, is the deploy
  suite's ``tests/deploy/test_mwaa_image.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from deploy.mwaa import build_plugins as build_mod
from deploy.mwaa import deploy as deploy_mod
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.entity_files import write_entity
from support.mwaa_image import CONSTRAINTS, CONSTRAINTS_URL, IMAGE_PACKAGES, read_pins
from support.mwaa_layout import (
    BUCKET,
    MWAA,
    REGION,
    bucket_objects,
    check_mwaa_view,
    copy_deployed_sources,
    deploy_quietly,
    mwaa_home,
    run_probe,
    startup_exports,
)
from support.servers import MotoServer

ROOT = Path(__file__).resolve().parents[1]
ENV_ARTEFACTS = {"plugins.zip", "requirements.txt", "startup.sh"}


# -- fixtures and helpers -------------------------------------------------------------------------
def tree(directory: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file a deployment takes from ``directory`` (no caches, no dot files)."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
        and "__pycache__" not in p.relative_to(directory).parts
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        and p.suffix != ".pyc"
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_deployed_sources(tmp_path / "repo")


@pytest.fixture
def s3(aws: MotoServer) -> Any:
    """A client of the moto server, and the environment's bucket, versioned as MWAA requires."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def run_deploy(*args: str | Path, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``deploy/mwaa/deploy.py`` as ``make deploy-mwaa`` runs it (AWS settings from the environment)."""
    command = [sys.executable, str(MWAA / "deploy.py"), "--bucket", BUCKET, *map(str, args)]
    if root is not None:
        command += ["--root", str(root)]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)


def expected_layout(root: Path) -> dict[str, bytes]:
    """The objects a deployment of ``root`` must leave in the bucket, restated independently."""
    layout = {f"dags/{name}": data for name, data in tree(root / "dags").items()}
    layout |= {f"dags/include/{name}": data for name, data in tree(root / "include").items()}
    layout["requirements.txt"] = (MWAA / "requirements.txt").read_bytes()
    layout["startup.sh"] = (MWAA / "startup.sh").read_bytes()
    return layout


# -- the files ------------------------------------------------------------------------------------
def test_requirements_txt_is_mwaas_constraint_plus_the_package_dependencies() -> None:
    text = (MWAA / "requirements.txt").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == f'--constraint "{CONSTRAINTS_URL}"'
    assert [line for line in lines if line.startswith("-")] == [lines[0]]
    listed = {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines[1:]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    provider = [r for r in extras["airflow"] if Requirement(r).name == "apache-airflow-providers-mysql"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *provider, *extras["nps"]]]
    # Exactly the runtime dependencies, the mysql provider and the NPS chart's, with pyproject's ranges.
    assert {name: str(r.specifier) for name, r in listed.items()} == {
        canonicalize_name(r.name): str(r.specifier) for r in wanted
    }
    image = read_pins(IMAGE_PACKAGES)
    constraints = read_pins(CONSTRAINTS)
    # No Airflow or provider the image has; what else it has resolves to the image's own version.
    assert not [n for n in listed if n.startswith("apache-airflow") and n in image]
    shared = sorted(set(listed) & set(image))
    assert shared == ["boto3", "croniter", "pydantic", "pyyaml"]
    assert {n: constraints[n] for n in shared} == {n: image[n] for n in shared}
    assert all(listed[n].specifier.contains(image[n]) for n in shared)
    # The image lacks the mysql provider and mysqlclient; the constraints bring them at their pins.
    for name, pin in {"apache-airflow-providers-mysql": "6.6.1", "mysqlclient": "2.2.8"}.items():
        assert name in listed and name not in image
        assert constraints[name] == pin and listed[name].specifier.contains(pin)
    # The comments name exactly the image's providers with their versions, and what the constraints give.
    providers = {n.removeprefix("apache-airflow-providers-"): v for n, v in image.items() if "-providers-" in n}
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    listing = comment.split("the providers ", 1)[1].split(": none of them", 1)[0]
    assert dict(re.findall(r"([a-z-]+) (\d+\.\d+\.\d+)", listing)) == providers
    assert f"apache-airflow {image['apache-airflow']} and the providers" in comment
    assert "resolve them to apache-airflow-providers-mysql 6.6.1 and mysqlclient 2.2.8" in comment


def test_plugins_zip_holds_the_package_and_the_survey_reader_and_is_reproducible(repo: Path) -> None:
    data = build_mod.plugins_zip_bytes(repo)
    archive = zipfile.ZipFile(io.BytesIO(data))
    package = {f"entity_etl/{name}": content for name, content in tree(repo / "plugins" / "entity_etl").items()}
    assert "entity_etl/orchestration/notifier.py" in package
    expected = {
        ".airflowignore": build_mod.AIRFLOWIGNORE.encode(),
        build_mod.PLUGIN_MODULE: (repo / "plugins" / build_mod.PLUGIN_MODULE).read_bytes(),
        **package,
    }
    # The checkout's plugins folder ignores the same (``make airflow``, compose).
    assert (ROOT / "plugins/.airflowignore").read_text() == build_mod.AIRFLOWIGNORE
    assert "entity_etl/survey_reader.py" in package  # what the NPS DAG reads the answers with
    assert {info.filename: archive.read(info) for info in archive.infolist()} == expected
    assert [line for line in build_mod.AIRFLOWIGNORE.splitlines() if not line.startswith("#")] == [
        "entity_etl/",
    ]
    # Reproducible: same sources, same bytes, whatever the files' times, byte code or build machine.
    (repo / "plugins/entity_etl/__pycache__").mkdir(exist_ok=True)
    (repo / "plugins/entity_etl/__pycache__/cli.cpython-312.pyc").write_bytes(b"\0" * 16)
    os.utime(repo / "plugins/entity_etl/cli.py", (1, 1))
    assert build_mod.plugins_zip_bytes(repo) == data
    assert {(i.date_time, i.external_attr >> 16, i.compress_type) for i in archive.infolist()} == {
        ((1980, 1, 1, 0, 0, 0), 0o100644, zipfile.ZIP_STORED)
    }
    # ... and a code change is a different zip.
    (repo / "plugins/entity_etl/cli.py").write_text((repo / "plugins/entity_etl/cli.py").read_text() + "\n# x\n")
    assert build_mod.plugins_zip_bytes(repo) != data
    # The command line writes the same bytes.
    out = repo / "out" / "plugins.zip"
    subprocess.run([sys.executable, str(MWAA / "build_plugins.py"), "-o", str(out), "--root", str(ROOT)], check=True)
    assert out.read_bytes() == build_mod.plugins_zip_bytes(ROOT)


def test_startup_sh_points_the_package_at_the_synced_include_dir(tmp_path: Path) -> None:
    home = tmp_path / "usr/local/airflow"
    assert startup_exports((MWAA / "startup.sh").read_text(), home) == {"ETL_INCLUDE_DIR": f"{home}/dags/include"}
    assert os.access(MWAA / "startup.sh", os.X_OK)
    assert (MWAA / "startup.sh").read_bytes().startswith(b"#!/bin/sh\n")
    assert b"\r" not in (MWAA / "startup.sh").read_bytes()


def test_without_startup_sh_the_package_from_plugins_zip_finds_include_in_the_dags_folder(
    repo: Path, tmp_path: Path
) -> None:
    """Imported from plugins.zip (no repo ``include/`` beside it), the package falls back to the DAGs folder."""
    zip_path = tmp_path / "plugins.zip"
    zip_path.write_bytes(build_mod.plugins_zip_bytes(repo))
    dags = tmp_path / "dags"
    probe = (
        "from entity_etl.config.loader import default_paths; "
        "from entity_etl.runtime.translators import default_glossary_path; "
        "print(*default_paths(), default_glossary_path(), sep='\\n')"
    )

    def paths(**env: str) -> list[str]:
        base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(zip_path), **env}
        done = subprocess.run([sys.executable, "-c", probe], env=base, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    include = dags / "include"
    expected = [str(include / "entities"), str(include / "sql"), str(include / "translate" / "glossary.yaml")]
    assert paths(AIRFLOW__CORE__DAGS_FOLDER=str(dags)) == expected
    # ETL_INCLUDE_DIR (what startup.sh exports) wins over the DAGs folder.
    other = tmp_path / "elsewhere"
    assert paths(AIRFLOW__CORE__DAGS_FOLDER=str(dags), ETL_INCLUDE_DIR=str(other))[0] == str(other / "entities")


def test_settings_become_exports_of_startup_sh(tmp_path: Path) -> None:
    text = (
        "# MWAA production\n\nETL_COMPUTE_BACKEND=batch\nexport ETL_OBJECT_STORE_URL = 's3://etl-objects/prod'\n"
        'ETL_NOTIFY_TOPIC_ARN="arn:aws:sns:eu-west-1:123456789012:etl alerts"\nODD=it\'s $HOME `x` \\ "q"\n'
    )
    settings = deploy_mod.parse_settings(text, "prod.env")
    assert settings == {
        "ETL_COMPUTE_BACKEND": "batch",
        "ETL_OBJECT_STORE_URL": "s3://etl-objects/prod",
        "ETL_NOTIFY_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:etl alerts",
        "ODD": 'it\'s $HOME `x` \\ "q"',
    }
    script = deploy_mod.render_startup((MWAA / "startup.sh").read_text(), settings, "prod.env")
    home = tmp_path / "home"
    assert startup_exports(script, home) == {"ETL_INCLUDE_DIR": f"{home}/dags/include", **settings}
    for bad, message in [
        ("PYTHONPATH=/x", "PYTHONPATH is reserved"),
        ("ETL_INCLUDE_DIR=/x", "ETL_INCLUDE_DIR is reserved"),
        ("lower=1", "expected NAME=value"),
        ("NOEQUALS", "expected NAME=value"),
    ]:
        with pytest.raises(deploy_mod.DeployError, match=re.escape(f"prod.env:2: {message}")):
            deploy_mod.parse_settings(f"# first\n{bad}\n", "prod.env")


# -- deploying to S3 (moto) -----------------------------------------------------------------------
@pytest.mark.moto
def test_deploy_leaves_exactly_the_mwaa_layout(s3: Any, repo: Path) -> None:
    result = deploy_quietly(repo, environment="etl-prod")
    objects = bucket_objects(s3)
    layout = expected_layout(repo)
    # The files, byte for byte, at the keys MWAA reads; plugins.zip is the build of this checkout.
    assert set(objects) == {*layout, "plugins.zip"}
    assert {key: objects[key] for key in layout} == layout
    assert objects["plugins.zip"] == build_mod.plugins_zip_bytes(repo)
    # Spelled out: DAG files and the entity config under dags/, the rest at MWAA's default paths.
    for key in [
        "dags/etl_entities.py",
        "dags/etl_config_errors.py",
        "dags/include/entities/_defaults.yaml",
        "dags/include/entities/de.yaml",
        "dags/include/sql/de/extract.sql",
        "dags/include/translate/glossary.yaml",
    ]:
        assert key in objects, key
    assert {key for key in objects if "/" not in key} == ENV_ARTEFACTS
    assert not [key for key in objects if key.startswith(("dags/plugins", "dags/entity_etl", "dags/lambdas"))]
    # Each object carries its SHA-256, which later deploys compare.
    head = s3.head_object(Bucket=BUCKET, Key="dags/include/entities/de.yaml")
    assert head["Metadata"]["sha256"] == hashlib.sha256(objects["dags/include/entities/de.yaml"]).hexdigest()
    # A first deployment: everything uploaded, SQL before entity files before DAG files.
    assert sorted(result.uploaded) == sorted(objects)
    synced = [key for key in result.uploaded if key not in ENV_ARTEFACTS]
    order = [0 if "/include/" in k and "/entities/" not in k else 1 if "/entities/" in k else 2 for k in synced]
    assert order == sorted(order)
    assert result.environment_update_needed
    assert set(result.update_reasons) == ENV_ARTEFACTS
    versions = {key: s3.head_object(Bucket=BUCKET, Key=key)["VersionId"] for key in ENV_ARTEFACTS}
    assert result.versions == versions
    assert "Environment update needed: plugins.zip, requirements.txt, startup.sh changed" in "\n".join(result.lines)
    assert f"--plugins-s3-path plugins.zip --plugins-s3-object-version {versions['plugins.zip']}" in "\n".join(
        result.lines
    )
    assert "aws mwaa update-environment --name etl-prod" in "\n".join(result.lines)


@pytest.mark.moto
def test_a_second_deploy_uploads_nothing(s3: Any, repo: Path) -> None:
    deploy_quietly(repo)
    before = {v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET)["Versions"]}
    done = run_deploy(root=repo)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("upload ")] == []
    unchanged = len(expected_layout(repo)) + 1  # and plugins.zip
    assert f"0 to upload, {unchanged} unchanged; 0 uploaded, 0 deleted" in done.stdout
    assert "No environment update needed" in done.stdout
    assert {v["VersionId"] for v in s3.list_object_versions(Bucket=BUCKET)["Versions"]} == before


@pytest.mark.moto
def test_a_new_entity_is_its_yaml_and_sql_and_needs_no_environment_update(s3: Any, repo: Path) -> None:
    deploy_quietly(repo)
    before = bucket_objects(s3)
    write_entity(repo / "include", "nz")
    done = run_deploy("--environment", "etl-prod", root=repo)
    assert done.returncode == 0, done.stderr
    uploads = [line for line in done.stdout.splitlines() if line.startswith("upload ")]
    # The SQL first, so that MWAA's sync never shows the entity file without its query.
    assert uploads == [
        f"upload s3://{BUCKET}/dags/include/sql/nz/extract.sql (new)",
        f"upload s3://{BUCKET}/dags/include/entities/nz.yaml (new)",
    ]
    assert "No environment update needed" in done.stdout
    assert "update-environment" not in done.stdout
    after = bucket_objects(s3)
    assert set(after) - set(before) == {"dags/include/entities/nz.yaml", "dags/include/sql/nz/extract.sql"}
    assert {k: after[k] for k in before} == before
    assert after["dags/include/entities/nz.yaml"] == (repo / "include/entities/nz.yaml").read_bytes()


@pytest.mark.moto
def test_a_code_change_is_plugins_zip_and_an_environment_update(s3: Any, repo: Path) -> None:
    first = deploy_quietly(repo)
    notifier = repo / "plugins/entity_etl/orchestration/notifier.py"
    notifier.write_text(notifier.read_text() + "\n# a fix\n")
    second = deploy_quietly(repo, environment="etl-prod")
    assert second.uploaded == ["plugins.zip"]
    assert second.update_reasons == ["plugins.zip"]
    assert second.versions["plugins.zip"] != first.versions["plugins.zip"]
    assert second.versions["requirements.txt"] == first.versions["requirements.txt"]
    text = "\n".join(second.lines)
    assert "Environment update needed: plugins.zip changed" in text
    for key in ENV_ARTEFACTS:  # the command names every artefact at its current version
        assert str(second.versions[key]) in text


@pytest.mark.moto
def test_settings_change_startup_sh_only(s3: Any, repo: Path, tmp_path: Path) -> None:
    deploy_quietly(repo)
    settings = tmp_path / "prod.env"
    settings.write_text("ETL_COMPUTE_BACKEND=batch\n")
    done = run_deploy("--settings", settings, root=repo)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("upload ")] == [
        f"upload s3://{BUCKET}/startup.sh (changed)"
    ]
    startup = s3.get_object(Bucket=BUCKET, Key="startup.sh")["Body"].read().decode()
    assert startup.endswith(f"# Deployment settings (from {settings}).\nexport ETL_COMPUTE_BACKEND=batch\n")
    settings.write_text("PYTHONPATH=/x\n")
    refused = run_deploy("--settings", settings, root=repo)
    assert refused.returncode == 2
    assert "PYTHONPATH is reserved" in refused.stderr


@pytest.mark.moto
def test_dry_run_writes_nothing(s3: Any, repo: Path) -> None:
    done = run_deploy("--dry-run", root=repo)
    assert done.returncode == 0, done.stderr
    assert bucket_objects(s3) == {}
    planned = {line.split()[2] for line in done.stdout.splitlines() if line.startswith("would upload ")}
    assert planned == {f"s3://{BUCKET}/{key}" for key in [*expected_layout(repo), "plugins.zip"]}
    assert "An environment update would be needed" in done.stdout


@pytest.mark.moto
def test_stale_include_files_are_kept_unless_delete(s3: Any, repo: Path) -> None:
    write_entity(repo / "include", "nz")
    deploy_quietly(repo)
    s3.put_object(Bucket=BUCKET, Key="dags/another_teams_dag.py", Body=b"# not ours")
    (repo / "include/entities/nz.yaml").unlink()
    kept = deploy_quietly(repo)
    assert kept.stale == ["dags/include/entities/nz.yaml"]
    assert kept.deleted == []
    assert "dags/include/entities/nz.yaml" in bucket_objects(s3)
    deleted = deploy_quietly(repo, delete=True)
    assert deleted.deleted == ["dags/include/entities/nz.yaml"]
    objects = bucket_objects(s3)
    assert "dags/include/entities/nz.yaml" not in objects
    assert "dags/another_teams_dag.py" in objects  # outside include/: never ours to delete
    assert "dags/include/sql/nz/extract.sql" in objects  # still in include/sql/


class _NotMd5ETags:
    """An S3 client whose listed ETags are not MD5s, as with SSE-KMS or multipart uploads."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_paginator(self, name: str) -> Any:
        paginator = self._client.get_paginator(name)

        class Pages:
            def paginate(self, **kwargs: Any) -> Any:
                for page in paginator.paginate(**kwargs):
                    for obj in page.get("Contents", []):
                        obj["ETag"] = '"0123456789abcdef0123456789abcdef-2"'
                    yield page

        return Pages()


@pytest.mark.moto
def test_unchanged_objects_are_recognised_without_md5_etags(s3: Any, repo: Path) -> None:
    deploy_quietly(repo)
    again = deploy_quietly(repo, s3=_NotMd5ETags(s3))
    assert again.uploaded == []
    assert not again.environment_update_needed
    (repo / "include/sql/de/extract.sql").write_text("SELECT 1")
    changed = deploy_quietly(repo, s3=_NotMd5ETags(s3))
    assert changed.uploaded == ["dags/include/sql/de/extract.sql"]


def test_a_missing_bucket_is_a_clear_error(aws: MotoServer) -> None:
    done = run_deploy("--dry-run")
    assert done.returncode == 2
    assert done.stderr.startswith(f"deploy.py: error: bucket '{BUCKET}': ")


# -- what MWAA sees -------------------------------------------------------------------------------
@pytest.mark.moto
def test_mwaa_sees_every_entity_dag_including_one_added_by_upload(s3: Any, repo: Path, tmp_path: Path) -> None:
    deploy_quietly(repo)
    write_entity(repo / "include", "nz")
    assert deploy_quietly(repo).uploaded == ["dags/include/sql/nz/extract.sql", "dags/include/entities/nz.yaml"]
    home, startup_env = mwaa_home(s3, tmp_path / "mwaa")
    assert startup_env == {"ETL_INCLUDE_DIR": str(home / "dags/include")}
    assert sorted(p.name for p in (home / "dags/include/entities").iterdir()) == [
        "_defaults.yaml",
        "br.yaml",
        "de.yaml",
        "entity.schema.json",
        "jp.yaml",
        "nz.yaml",
    ]
    report = run_probe(sys.executable, "dagbag", home, startup_env, tmp_path)
    check_mwaa_view(report, home)
