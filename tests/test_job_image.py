"""The AWS Batch job image: what the Dockerfile installs runs the stages, and has no Airflow.

There is no Docker engine here, so the image itself is not built. Instead:

* the Dockerfile is read: a slim Python 3.12 base, a non-root user, every copied path exists, and the
  final stage installs only the wheels of the first;
* the dependency set the Dockerfile installs (``uv export`` of the lock, no extras, no dev group)
  holds no Airflow;
* that set and the package are installed into a clean virtualenv, where ``import airflow`` fails and
  ``etlctl`` runs every stage of an entity end to end on SQLite. The virtualenv is made with a
  Python 3.12, as in the image, when one runs here (``find_python312``: ``python3.12`` on PATH, pyenv's,
  ``/usr/bin/python3.12``); where none does it falls back to the interpreter running the tests (3.11
  in ``.venv``), which checks the dependency set and the stages but not on the image's Python.

uv is the one ``uv run`` names in ``$UV``, else ``uv`` on PATH, else ``~/.local/bin/uv`` (where
``make test`` installs it with ``pip --user``, often not on PATH).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from support.entity_files import make_include, write_entity
from support.mwaa_image import find_python312, find_uv
from support.servers import require

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_dockerfile_slim_python_312_non_root_and_only_built_wheels() -> None:
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    assert args["PYTHON_IMAGE"].startswith("python:3.12-slim")
    assert args["UV_IMAGE"].startswith("ghcr.io/astral-sh/uv:")  # official defaults; tests pass stand-ins
    uv, build, final = stages()
    assert uv == [("FROM", "${UV_IMAGE} AS uv")]  # the uv binary's stage only
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build") and final[0] == ("FROM", "${PYTHON_IMAGE}")
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    runs = " ".join(a for w, a in final if w == "RUN")
    assert "--no-index --find-links /wheels" in runs  # nothing fetched from an index in the final image
    assert "airflow" not in runs.replace("find_spec('airflow')", "")
    assert "build-essential" not in runs and "libmariadb-dev" not in runs  # compilers stay in the build stage
    for word, arg in instructions():
        if word == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


def uv_binary() -> str:
    """``$UV`` (set by ``uv run``), else ``uv`` on PATH, else ``~/.local/bin/uv``."""
    uv = os.environ.get("UV") or find_uv()
    require(uv is not None, "uv is not installed (make test installs it)")
    assert uv is not None
    return uv


def exported_requirements() -> str:
    return subprocess.run(
        [uv_binary(), "export", "--frozen", "--no-default-groups", "--no-emit-project", "--no-hashes"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_the_image_dependency_set_has_no_airflow() -> None:
    names = {
        line.split("==")[0].strip().lower()
        for line in exported_requirements().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert {"pydantic", "pyyaml", "boto3", "mysqlclient", "croniter"} <= names
    assert not {n for n in names if "airflow" in n}


@pytest.mark.slow
def test_clean_venv_without_airflow_runs_every_stage(tmp_path: Path) -> None:
    uv = uv_binary()
    base = find_python312() or sys.executable  # the image's 3.12 where one runs here (see the module doc)
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", base, str(venv)], check=True)
    python = venv / "bin" / "python"
    version = subprocess.run(
        [str(python), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == str((3, 12) if base != sys.executable else sys.version_info[:2])
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(exported_requirements())
    install = [uv, "pip", "install", "--quiet", "--python", str(python)]
    subprocess.run([*install, "-r", str(requirements)], check=True, capture_output=True)
    subprocess.run([*install, "--no-deps", str(ROOT)], check=True, capture_output=True)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('airflow'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None"

    include = make_include(tmp_path)
    write_entity(include, "xx")
    src, tgt = tmp_path / "src.db", tmp_path / "tgt.db"
    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE src (id TEXT, label TEXT, amount TEXT, changed_at TEXT)")
        conn.executemany(
            "INSERT INTO src VALUES (?, ?, ?, ?)",
            [(f"k{i % 40}", f"label {i}", f"{i}.50", f"2026-01-01 00:{i // 60:02d}:{i % 60:02d}") for i in range(50)],
        )
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ETL_INCLUDE_DIR": str(include),
        "ETL_STATE_DB": str(tmp_path / "state.db"),
        "ETL_OBJECT_STORE_URL": str(tmp_path / "store"),
        "AIRFLOW_CONN_SRC_XX": json.dumps({"conn_type": "sqlite", "host": str(src)}),
        "AIRFLOW_CONN_TGT": json.dumps({"conn_type": "sqlite", "host": str(tgt)}),
    }
    etlctl = str(venv / "bin" / "etlctl")
    interval = ["--interval-start", "2026-01-01T00:00:00Z", "--interval-end", "2026-01-02T00:00:00Z"]
    assert subprocess.run([etlctl, "validate"], env=env, capture_output=True, text=True).returncode == 0
    for stage in ("cleanup", "extract", "load_staging", "dedupe", "load_target"):
        proc = subprocess.run(
            [etlctl, "run-stage", "--entity", "xx", "--stage", stage, "--run-id", "manual__1", *interval],
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-800:]
    with sqlite3.connect(tgt) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM t_xx").fetchone() == (40, 40)
