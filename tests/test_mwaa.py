"""Amazon MWAA packaging (deploy/mwaa/): the S3 layout, what needs an environment update, and what MWAA sees.

* The deploy script against a real moto S3 server: the exact objects, a second deploy that uploads
  nothing, a new entity that is exactly its YAML and SQL file and needs no environment update, a
  code change that does, dry runs, stale files, and buckets whose ETags are not MD5s (SSE-KMS).
* The MWAA container's view: the ``dags/`` prefix downloaded from moto into an MWAA-like
  ``AIRFLOW_HOME``, plugins.zip unzipped into its ``plugins/``, the variables startup.sh exports; the
  plugin manager, the triggerer's import of the Deadline Alert callback and the DAG processor's parse,
  in a subprocess where this checkout is not importable (``tests/support/mwaa_probe.py``).
* ``slow``: the same in a separate Python 3.12 venv with MWAA 3.3.1's pins (apache-airflow 3.3.1,
  amazon provider 9.34.0, mysql provider 6.6.1), cached in ``.venv-mwaa``, plus a Batch stage
  submitted through that amazon provider's ``BatchOperator`` to moto.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
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
from support.servers import IN_CI, MotoServer

ROOT = Path(__file__).resolve().parents[1]
MWAA = ROOT / "deploy" / "mwaa"
PROBE = Path(__file__).with_name("support") / "mwaa_probe.py"
BUCKET = "mwaa-entity-etl"
REGION = "eu-west-1"
CONSTRAINTS_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"
#: What Amazon MWAA's Airflow 3.3.1 image pins (and what the slow test installs).
MWAA_PINS = (
    "apache-airflow==3.3.1",
    "apache-airflow-providers-amazon==9.34.0",
    "apache-airflow-providers-mysql==6.6.1",
)
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
    """A copy of what a deployment reads: dags/, include/, plugins/entity_etl."""
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("dags", "include", "plugins/entity_etl"):
        shutil.copytree(ROOT / part, copy / part, ignore=ignore)
    shutil.copy2(ROOT / "plugins" / build_mod.PLUGIN_MODULE, copy / "plugins" / build_mod.PLUGIN_MODULE)
    return copy


@pytest.fixture
def s3(aws: MotoServer) -> Any:
    """A client of the moto server, and the environment's bucket, versioned as MWAA requires."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def bucket_objects(s3: Any) -> dict[str, bytes]:
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def run_deploy(*args: str | Path, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``deploy/mwaa/deploy.py`` as ``make deploy-mwaa`` runs it (AWS settings from the environment)."""
    command = [sys.executable, str(MWAA / "deploy.py"), "--bucket", BUCKET, *map(str, args)]
    if root is not None:
        command += ["--root", str(root)]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=300)


def deploy_quietly(root: Path, **kwargs: Any) -> Any:
    lines: list[str] = []
    result = deploy_mod.deploy(BUCKET, root=root, out=lines.append, **kwargs)
    result.lines = lines
    return result


def expected_layout(root: Path) -> dict[str, bytes]:
    """The objects a deployment of ``root`` must leave in the bucket, restated independently."""
    layout = {f"dags/{name}": data for name, data in tree(root / "dags").items()}
    layout |= {f"dags/include/{name}": data for name, data in tree(root / "include").items()}
    layout["requirements.txt"] = (MWAA / "requirements.txt").read_bytes()
    layout["startup.sh"] = (MWAA / "startup.sh").read_bytes()
    return layout


# -- the files ------------------------------------------------------------------------------------
def test_requirements_txt_is_mwaas_constraint_plus_the_package_dependencies() -> None:
    lines = [
        line.strip()
        for line in (MWAA / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == f'--constraint "{CONSTRAINTS_URL}"'
    assert [line for line in lines if line.startswith("-")] == [lines[0]]
    listed = {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines[1:]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["nps"]]]
    # Exactly the runtime dependencies and the NPS chart's, with the same version ranges.
    assert {name: str(r.specifier) for name, r in listed.items()} == {
        canonicalize_name(r.name): str(r.specifier) for r in wanted
    }
    # Nothing that MWAA's image already has: a pin of Airflow or a provider would replace the image's.
    assert not [name for name in listed if name.startswith("apache-airflow")]


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


def startup_exports(script: str, airflow_home: Path, workdir: Path | None = None) -> dict[str, str]:
    """The variables that ``script`` exports, as MWAA collects them after running it with bash."""
    base = {"PATH": os.environ["PATH"], "AIRFLOW_HOME": str(airflow_home), "MWAA_AIRFLOW_COMPONENT": "worker"}
    probe = 'set -e; . "$1" >/dev/null; env -0'
    path = (workdir or airflow_home) / "startup.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script)
    done = subprocess.run(["bash", "-c", probe, "startup", str(path)], env=base, capture_output=True, check=True)
    after = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if item)
    return {k: v for k, v in after.items() if base.get(k) != v and k not in ("PWD", "SHLVL", "_", "OLDPWD")}


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
def mwaa_home(s3: Any, base: Path) -> tuple[Path, dict[str, str]]:
    """An MWAA container's AIRFLOW_HOME from the bucket, and the variables its startup.sh exports."""
    home = base / "usr/local/airflow"
    for key, data in bucket_objects(s3).items():
        if key.startswith("dags/"):  # MWAA syncs the DAGs folder prefix to $AIRFLOW_HOME/dags
            target = home / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    plugins = s3.get_object(Bucket=BUCKET, Key="plugins.zip")["Body"].read()
    zipfile.ZipFile(io.BytesIO(plugins)).extractall(home / "plugins")  # as MWAA does on start
    startup = s3.get_object(Bucket=BUCKET, Key="startup.sh")["Body"].read().decode()
    return home, startup_exports(startup, home, workdir=base)


def run_probe(python: str, mode: str, home: Path, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """``tests/support/mwaa_probe.py`` in a clean environment, from a folder outside this checkout."""
    script = tmp / "mwaa_probe.py"
    shutil.copy2(PROBE, script)
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp}/airflow.db",
        "ETL_STATE_DB": str(tmp / "etl-state.db"),
        # The developer checkout must not be what the probe imports: MWAA has only its two folders.
        "MWAA_PROBE_HIDE": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
    }
    done = subprocess.run(
        [python, str(script), mode], env={**base, **env}, cwd=tmp, capture_output=True, text=True, timeout=600
    )
    reports = [line for line in done.stdout.splitlines() if line.startswith("MWAA-PROBE ")]
    assert done.returncode == 0 and reports, f"probe {mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    report: dict[str, Any] = json.loads(reports[-1].removeprefix("MWAA-PROBE "))
    return report


def check_mwaa_view(report: dict[str, Any], home: Path) -> None:
    assert report["import_errors"] == {}
    assert {"etl_de", "etl_jp", "etl_br", "etl_nz", "survey_nps_daily"} <= set(report["dag_ids"])
    etl = sorted(d for d in report["dag_ids"] if d.startswith("etl_"))
    assert etl == ["etl_br", "etl_de", "etl_jp", "etl_nz"]
    assert report["tasks"]["etl_nz"] == sorted(
        [
            "acquire_lease",
            "cleanup",
            "extract",
            "load_staging",
            "dedupe",
            "load_target",
            "publish_loaded",
            "release_lease",
        ]
    )
    # The config is read where MWAA syncs it, the code comes from plugins.zip.
    assert report["entities_dir"] == str(home / "dags/include/entities")
    assert report["sql_dir"] == str(home / "dags/include/sql")
    assert report["entity_etl_from_plugins"], report["entity_etl_file"]
    assert report["survey_reader_from_plugins"], report["survey_reader_file"]
    # The triggerer imports the Deadline Alert callback with no DAGs folder on its path.
    assert report["dags_folder_on_path_before_parse"] is False
    assert report["callback_import"] == "entity_etl.orchestration.notifier.SnsEventNotifier"
    # The plugin manager runs the plugin module only (none of the package's modules as plugins: they
    # are imported as ``entity_etl.*``), and reports no error.
    assert report["plugin_import_errors"] == {}
    assert [m for m in report["modules_run_as_plugins"] if m.split(".")[0] != "entity_etl"] == ["entity_etl_plugin"]
    assert "entity_etl" in report["plugin_names"]


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


# -- MWAA's pins, Python 3.12 ---------------------------------------------------------------------
VENV = ROOT / ".venv-mwaa"


def find_uv() -> str | None:
    found = shutil.which("uv")
    fallback = Path.home() / ".local/bin/uv"
    return found or (str(fallback) if fallback.exists() else None)


def find_python312() -> str | None:
    """A Python 3.12 that runs (a pyenv shim named python3.12 may exist and still fail), as the Makefile looks."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for candidate in [*candidates, "/usr/bin/python3.12"]:
        if not candidate or not Path(candidate).exists():
            continue
        check = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"], capture_output=True, text=True
        )
        if check.returncode == 0 and check.stdout.strip() == "True":
            return candidate
    return None


def fetch_constraints() -> str | None:
    """The Airflow 3.3.1 / Python 3.12 constraints file, or None when GitHub is out of reach."""
    try:
        with urllib.request.urlopen(CONSTRAINTS_URL, timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return None


def mwaa_venv(tmp: Path) -> tuple[Path, bool]:
    """``.venv-mwaa``: MWAA's pins and deploy/mwaa/requirements.txt on Python 3.12; (python, constraints used)."""
    uv, python = find_uv(), find_python312()
    if uv is None or python is None:
        missing = "uv" if uv is None else "a Python 3.12 (python3.12, ~/.pyenv/versions/3.12*/bin/python3.12)"
        message = f"the MWAA pins test needs {missing}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: this test never skips)")
        pytest.skip(message)
    constraints = fetch_constraints()
    requirements = [
        line for line in (MWAA / "requirements.txt").read_text().splitlines() if not line.startswith("--constraint")
    ]
    stamp = hashlib.sha256(
        json.dumps([MWAA_PINS, requirements, python, constraints is not None, constraints or ""]).encode()
    ).hexdigest()
    venv_python = VENV / "bin" / "python"
    stamp_file = VENV / ".entity-etl-stamp"
    reusable = stamp_file.exists() and stamp_file.read_text() == stamp and venv_python.exists()
    if reusable and subprocess.run([str(venv_python), "-c", "import airflow"], capture_output=True).returncode == 0:
        return venv_python, constraints is not None
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([uv, "venv", "--quiet", "--python", python, str(VENV)], check=True)
    requirements_file = tmp / "requirements.txt"
    requirements_file.write_text("\n".join(requirements) + "\n")
    command = [uv, "pip", "install", "--quiet", "--python", str(venv_python), *MWAA_PINS, "-r", str(requirements_file)]
    if constraints is not None:
        # MWAA's pins win over the constraints file's own lines for the same packages.
        pinned = {canonicalize_name(Requirement(p).name) for p in MWAA_PINS}
        kept = [
            line
            for line in constraints.splitlines()
            if not line.strip() or line.startswith("#") or canonicalize_name(Requirement(line).name) not in pinned
        ]
        constraints_file = tmp / "constraints-3.12.txt"
        constraints_file.write_text("\n".join(kept) + "\n")
        command += ["-c", str(constraints_file)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"installing MWAA's pins failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    stamp_file.write_text(stamp)
    return venv_python, constraints is not None


@pytest.mark.slow
@pytest.mark.moto
def test_with_mwaas_pins_on_python_312_the_dags_load_and_a_batch_stage_runs(
    s3: Any, repo: Path, tmp_path: Path, aws: MotoServer
) -> None:
    python, _ = mwaa_venv(tmp_path)
    deploy_quietly(repo)
    write_entity(repo / "include", "nz")
    deploy_quietly(repo)
    home, startup_env = mwaa_home(s3, tmp_path / "mwaa")

    report = run_probe(str(python), "dagbag", home, startup_env, tmp_path)
    assert report["versions"]["python"].startswith("3.12.")
    assert report["versions"]["apache-airflow"] == "3.3.1"
    assert report["versions"]["apache-airflow-providers-amazon"] == "9.34.0"
    assert report["versions"]["apache-airflow-providers-mysql"] == "6.6.1"
    assert report["airflow_file"].startswith(str(VENV))
    check_mwaa_view(report, home)
    # What the stage task shows Airflow is amazon 9.34.0's BatchOperator, field for field.
    assert report["batch_surface_differences"] == {}

    # A stage on the batch backend: amazon 9.34.0's BatchOperator submits and monitors the job on moto.
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
    ran = run_probe(str(python), "batch", home, batch_env, tmp_path)
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
