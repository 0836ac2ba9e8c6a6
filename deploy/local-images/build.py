#!/usr/bin/env python3
"""Build the local STAND-INS for the images this repo's Docker files name but this network cannot pull.

No image registry is reachable here (Debian's packages and PyPI are). Each stand-in is built from what
is reachable and tagged ``local/...``; the Docker files keep the official images as their defaults and
the tests pass these as build arguments:

==============================  =====================================  ==========================================
official image (the default)    stand-in                                made from
==============================  =====================================  ==========================================
debian:bookworm                 local/debian:bookworm                   ``debootstrap --variant=minbase bookworm``
python:3.12-slim-bookworm       local/python:3.12-slim-bookworm         the base + the host's CPython 3.12 build
ghcr.io/astral-sh/uv:0.9        local/uv:stand-in                       the host's ``uv`` binary, alone
apache/airflow:3.3.1-python3.12 local/airflow:3.3.1-python3.12          the python stand-in + ``apache-airflow==3.3.1``
                                                                        and providers from PyPI, under Airflow's
                                                                        3.3.1/py3.12 constraints
postgres:16                     local/postgres:15-stand-in              Debian's ``postgresql-15`` (bookworm has no 16)
mysql:8.4                       local/mariadb:10.11-stand-in            Debian's MariaDB 10.11 (Debian has no MySQL)
motoserver/moto:<tag>           local/moto:<tag>                        the python stand-in + ``moto[server]==<tag>``
==============================  =====================================  ==========================================

``--only base`` builds the first three (the Batch image's); the default builds all.

Every image carries a label ``entity-etl.stand-in.inputs`` with a hash of what it was made from; a run
whose inputs hash the same reuses the image. Usage: ``deploy/local-images/build.py [--python PATH]``
(root, or a user that may run debootstrap and docker). Prints one line per image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABEL = "entity-etl.stand-in.inputs"
DEBIAN = "local/debian:bookworm"
PYTHON = "local/python:3.12-slim-bookworm"
UV = "local/uv:stand-in"
AIRFLOW = "local/airflow:3.3.1-python3.12"
POSTGRES = "local/postgres:15-stand-in"
MARIADB = "local/mariadb:10.11-stand-in"
ROOT = HERE.parents[1]
CONSTRAINTS = ROOT / "deploy/compose/airflow-constraints-3.3.1-py3.12.txt"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
PROXY_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _docker(*args: str, capture: bool = False) -> str:
    done = subprocess.run(["docker", *args], check=True, text=True, capture_output=capture)
    return done.stdout.strip() if capture else ""


def _label(image: str) -> str | None:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', image],
        text=True,
        capture_output=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _hash(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _cached(image: str, inputs: str) -> bool:
    if _label(image) == inputs:
        print(f"stand-in {image}: reused (inputs {inputs})")
        return True
    return False


def debian() -> str:
    inputs = _hash("debootstrap --variant=minbase bookworm", MIRROR)
    if not _cached(DEBIAN, inputs):
        with tempfile.TemporaryDirectory(prefix="debootstrap-") as tmp:
            root = Path(tmp) / "rootfs"
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(
                ["docker", "import", "--change", f"LABEL {LABEL}={inputs}", "--change", 'CMD ["bash"]', "-", DEBIAN],
                stdin=tar.stdout,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if tar.wait() != 0:
                raise SystemExit("tar of the debootstrap tree failed")
        print(f"stand-in {DEBIAN}: built (inputs {inputs})")
    return inputs


def python(base_inputs: str, interpreter: Path) -> str:
    prefix = Path(
        subprocess.run(
            [str(interpreter), "-c", "import sys; print(sys.prefix)"], check=True, text=True, capture_output=True
        ).stdout.strip()
    )
    version = subprocess.run([str(interpreter), "-VV"], check=True, text=True, capture_output=True).stdout
    if not version.startswith("Python 3.12"):
        raise SystemExit(f"{interpreter} is {version.strip()}, not Python 3.12")
    dockerfile = (HERE / "python.Dockerfile").read_bytes()
    ca = PROXY_CA.read_bytes() if PROXY_CA.exists() else b""
    inputs = _hash(base_inputs, version, str(prefix), dockerfile, ca)
    if _cached(PYTHON, inputs):
        return inputs
    skip = shutil.ignore_patterns("__pycache__", "test", "tests", "idlelib", "tkinter", "turtledemo", "*.pth")
    with tempfile.TemporaryDirectory(prefix="python-stand-in-") as tmp:
        context = Path(tmp)
        shutil.copytree(prefix, context / "python", symlinks=True, ignore=skip)
        (context / "proxy-ca.crt").write_bytes(ca)
        shutil.copy(HERE / "python.Dockerfile", context / "Dockerfile")
        _docker(
            "build",
            "-q",
            "--build-arg",
            f"BASE_IMAGE={DEBIAN}",
            "--label",
            f"{LABEL}={inputs}",
            "-t",
            PYTHON,
            str(context),
            capture=True,
        )
    print(f"stand-in {PYTHON}: built from {prefix} ({version.strip()}) (inputs {inputs})")
    return inputs


def uv() -> None:
    binary = shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    data = Path(binary).read_bytes()
    inputs = _hash("uv", data)
    if _cached(UV, inputs):
        return
    with tempfile.TemporaryDirectory(prefix="uv-stand-in-") as tmp:
        shutil.copy(binary, Path(tmp) / "uv")
        Path(tmp, "Dockerfile").write_text("FROM scratch\nCOPY uv /uv\n")
        _docker("build", "-q", "--label", f"{LABEL}={inputs}", "-t", UV, tmp, capture=True)
    print(f"stand-in {UV}: built from {binary} (inputs {inputs})")


def _proxy_args() -> list[str]:
    """The host's proxy settings, for pip inside builds (Docker's predefined ARGs: not kept in the image)."""
    names = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
    return [f"--build-arg={name}={os.environ[name]}" for name in names if os.environ.get(name)]


def _from_dockerfile(
    image: str, dockerfile: str, base: tuple[str, str], files: dict[str, Path], args: dict[str, str], note: str
) -> str:
    """``docker build`` of ``HERE/dockerfile`` FROM ``base`` (image, its inputs) with ``files`` as the context."""
    parts: list[bytes | str] = [base[1], (HERE / dockerfile).read_bytes(), *sorted(f"{k}={v}" for k, v in args.items())]
    parts += [f"{name}:".encode() + path.read_bytes() for name, path in sorted(files.items())]
    inputs = _hash(*parts)
    if _cached(image, inputs):
        return inputs
    with tempfile.TemporaryDirectory(prefix="stand-in-") as tmp:
        for name, path in files.items():
            shutil.copy(path, Path(tmp) / name)
        shutil.copy(HERE / dockerfile, Path(tmp) / "Dockerfile")
        build_args = [f"--build-arg={k}={v}" for k, v in {"BASE_IMAGE": base[0], **args}.items()]
        done = subprocess.run(
            ["docker", "build", *build_args, *_proxy_args(), "--label", f"{LABEL}={inputs}", "-t", image, tmp],
            text=True,
            capture_output=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"docker build of {image} failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}")
    print(f"stand-in {image}: built, {note} (inputs {inputs})")
    return inputs


def airflow(python_inputs: str) -> str:
    return _from_dockerfile(
        AIRFLOW,
        "airflow.Dockerfile",
        (PYTHON, python_inputs),
        {"constraints.txt": CONSTRAINTS},
        {},
        "apache-airflow==3.3.1 + providers from PyPI under the 3.3.1/py3.12 constraints, for apache/airflow:3.3.1-python3.12",
    )


def postgres(base_inputs: str) -> str:
    files = {"postgres-entrypoint.sh": HERE / "postgres-entrypoint.sh"}
    note = "Debian bookworm's PostgreSQL 15 standing in for postgres:16 (Debian 12 has no 16)"
    return _from_dockerfile(POSTGRES, "postgres.Dockerfile", (DEBIAN, base_inputs), files, {}, note)


def mariadb(base_inputs: str) -> str:
    files = {"mariadb-entrypoint.sh": HERE / "mariadb-entrypoint.sh"}
    note = "MariaDB 10.11 (Debian's) standing in for mysql:8.4: it is not MySQL"
    return _from_dockerfile(MARIADB, "mariadb.Dockerfile", (DEBIAN, base_inputs), files, {}, note)


def moto_version() -> str:
    """The moto release docker-compose.yaml names (its MOTO_IMAGE default, motoserver/moto:<tag>)."""
    found = re.search(r"MOTO_IMAGE:-motoserver/moto:([\w.]+)\}", (ROOT / "docker-compose.yaml").read_text())
    if not found:
        raise SystemExit("docker-compose.yaml names no ${MOTO_IMAGE:-motoserver/moto:<tag>} default")
    return found.group(1)


def moto(python_inputs: str) -> str:
    version = moto_version()
    note = f"moto[server]=={version} from PyPI standing in for motoserver/moto:{version}"
    return _from_dockerfile(
        f"local/moto:{version}", "moto.Dockerfile", (PYTHON, python_inputs), {}, {"MOTO_VERSION": version}, note
    )


def default_python() -> Path:
    for candidate in [shutil.which("python3.12"), *sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))]:
        if candidate and subprocess.run([str(candidate), "-c", ""], capture_output=True).returncode == 0:
            return Path(candidate)
    raise SystemExit("no Python 3.12 on this machine for the python stand-in (pass --python)")


def main() -> None:
    parser = argparse.ArgumentParser(description="Build local stand-ins for the images no registry serves here.")
    parser.add_argument("--python", type=Path, help="a CPython 3.12 whose prefix becomes /usr/local in the image")
    parser.add_argument("--only", choices=["base", "compose"], help="base: debian, python, uv; compose: all")
    args = parser.parse_args()
    base = debian()
    python_inputs = python(base, args.python or default_python())
    uv()
    if args.only == "base":
        return
    postgres(base)
    mariadb(base)
    moto(python_inputs)
    airflow(python_inputs)


if __name__ == "__main__":
    sys.exit(main())
