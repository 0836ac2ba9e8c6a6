"""Docker for the deploy suite (tests/deploy/): the engine's presence, the local stand-in images, and
image builds with the stand-ins passed as build arguments (deploy/local-images/build.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import IN_CI

ROOT = Path(__file__).resolve().parents[2]
#: Official image (the Docker files' default) -> the local STAND-IN the tests build with.
STAND_INS = {
    "PYTHON_IMAGE": "local/python:3.12-slim-bookworm",
    "UV_IMAGE": "local/uv:stand-in",
}


def require_docker() -> None:
    """Fail under CI (make test-deploy starts the engine), skip elsewhere, when no engine answers."""
    ok = shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    if not ok:
        message = "no Docker engine answers (make test-deploy installs and starts one)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true: the deploy suite never skips")
        pytest.skip(message)


def build_stand_ins(only: str | None = "base") -> None:
    """Build (or reuse, by their input hash) the stand-ins (``only="base"``: the Batch image's; None: all,
    the compose stack's too); their lines go to the test output."""
    flags = ["--only", only] if only else []
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy/local-images/build.py"), *flags], capture_output=True, text=True
    )
    sys.stderr.write(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"deploy/local-images/build.py failed:\n{done.stderr[-3000:]}")


def build_image(tag: str, dockerfile: str = "Dockerfile") -> float:
    """``docker build`` of ``dockerfile`` at the repo root with the STAND-IN base images; its size in MB."""
    args = [f"--build-arg={name}={image}" for name, image in STAND_INS.items()]
    print(f"\nbuilding {dockerfile} with STAND-IN images: {', '.join(f'{k}={v}' for k, v in STAND_INS.items())}")
    done = subprocess.run(
        ["docker", "build", "-q", "-f", str(ROOT / dockerfile), *args, "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker build of {dockerfile} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    size = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", tag], check=True, capture_output=True, text=True
    )
    return int(size.stdout.strip()) / 1e6
