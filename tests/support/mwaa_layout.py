"""What an Amazon MWAA container sees of a deployment: its ``AIRFLOW_HOME`` rebuilt from the bucket.

Shared by ``tests/test_mwaa.py`` (this checkout's venv) and ``tests/deploy/test_mwaa_image.py``
(a venv built as MWAA's 3.3.1 image): the deploy into the bucket, the ``dags/`` prefix downloaded,
plugins.zip unzipped into ``plugins/``, the variables ``startup.sh`` exports, and
``tests/support/mwaa_probe.py`` run in a subprocess where this checkout is not importable.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from deploy.mwaa import deploy as deploy_mod

ROOT = Path(__file__).resolve().parents[2]
MWAA = ROOT / "deploy" / "mwaa"
PROBE = Path(__file__).with_name("mwaa_probe.py")
BUCKET = "mwaa-entity-etl"
REGION = "eu-west-1"


def bucket_objects(s3: Any) -> dict[str, bytes]:
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}


def deploy_quietly(root: Path, **kwargs: Any) -> Any:
    lines: list[str] = []
    result = deploy_mod.deploy(BUCKET, root=root, out=lines.append, **kwargs)
    result.lines = lines
    return result


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


def copy_deployed_sources(dest: Path) -> Path:
    """A copy of what a deployment reads: dags/, include/, plugins/entity_etl and the plugin module."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("dags", "include", "plugins/entity_etl"):
        shutil.copytree(ROOT / part, dest / part, ignore=ignore)
    shutil.copy2(ROOT / "plugins/entity_etl_plugin.py", dest / "plugins/entity_etl_plugin.py")
    return dest


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
