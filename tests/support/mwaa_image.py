"""A Python 3.12 venv built as Amazon MWAA's Airflow 3.3.1 image, then deploy/mwaa/requirements.txt on it.

The image's data is vendored in ``deploy/mwaa/image/`` (see its README.md); a missing file is an
error, never a reason to install something weaker.

1. :func:`build_image_venv`: the image build's package list (``image-required-packages.sh.txt``,
   ``${AIRFLOW_VERSION}`` = 3.3.1) under the Airflow 3.3.1 / Python 3.12 constraints.
2. :func:`mwaa_requirements`: MWAA's rule for the user's requirements.txt: its constraint URL is
   mapped to the vendored file, and when no line matches ``-c `` or ``--constraint `` (a commented-out
   one counts) ``-c <constraints>`` is added; the essential pins are passed as a second ``-c``.
3. :func:`install_requirements` installs that file into the venv.

``uv pip`` does the installs (MWAA runs pip; uv resolves the same constraints and caches wheels).
The venv is cached in ``.venv-mwaa`` and rebuilt when an input changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "deploy" / "mwaa" / "image"
CONSTRAINTS = IMAGE / "airflow-constraints-3.3.1-py3.12.txt"
ESSENTIAL = IMAGE / "mwaa-essential-constraints.txt"
REQUIRED = IMAGE / "image-required-packages.sh.txt"
IMAGE_PACKAGES = IMAGE / "image-python-packages.txt"
CONSTRAINTS_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-3.3.1/constraints-3.12.txt"
AIRFLOW_VERSION = "3.3.1"
VENV = ROOT / ".venv-mwaa"
#: Distributions the install holds that the image's bill of materials does not list (all but pycurl
#: are pinned by the constraints; the BOM's generator leaves them out).
BOM_OMITS = frozenset({"lockfile", "ordered-set", "pycurl", "setuptools", "wcwidth"})
_CONSTRAINT_LINE = re.compile(r"(^|\s)(-c |--constraint )")


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


def vendored(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path.relative_to(ROOT)} is missing: MWAA's image data must be vendored in deploy/mwaa/image/ "
            "(see its README.md); the MWAA tests never fall back to installing without it"
        )
    return path


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a constraints or package list, by canonical name."""
    pins: dict[str, str] = {}
    for line in vendored(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def required_packages() -> list[str]:
    """The array ``REQUIRED_PACKAGES=( ... )`` of the image build's install script."""
    text = vendored(REQUIRED).read_text()
    body = text.split("REQUIRED_PACKAGES=(", 1)[1].split(")", 1)[0]
    return [item.strip('"').replace("${AIRFLOW_VERSION}", AIRFLOW_VERSION) for item in body.split()]


def mwaa_requirements(requirements: str, constraints: Path) -> str:
    """requirements.txt as MWAA installs it, with the constraint URL mapped to ``constraints``."""
    text = requirements.replace(CONSTRAINTS_URL, str(constraints))
    if not any(_CONSTRAINT_LINE.search(line) for line in text.splitlines()):
        text = f"-c {constraints}\n{text}"
    return text


@dataclass
class MwaaVenv:
    python: Path
    image: dict[str, str]  # what step 1 installed (the image), name -> version
    installed: dict[str, str]  # after requirements.txt
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False


def freeze(uv: str, python: Path) -> dict[str, str]:
    done = subprocess.run([uv, "pip", "freeze", "--python", str(python)], capture_output=True, text=True, check=True)
    return {
        canonicalize_name(name): version
        for name, _, version in (line.partition("==") for line in done.stdout.splitlines())
        if version
    }


def _install(uv: str, python: Path, *args: str) -> float:
    started = time.monotonic()
    done = subprocess.run([uv, "pip", "install", "--python", str(python), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"uv pip install {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return time.monotonic() - started


def build_image_venv(uv: str, base_python: str, requirements: Path, scratch: Path) -> MwaaVenv:
    """``.venv-mwaa``: the image's packages, then ``requirements`` as MWAA installs it (cached)."""
    inputs = [vendored(p).read_text() for p in (CONSTRAINTS, ESSENTIAL, REQUIRED)]
    stamp = hashlib.sha256(json.dumps([inputs, requirements.read_text(), base_python]).encode()).hexdigest()
    python, record = VENV / "bin" / "python", VENV / ".entity-etl-mwaa.json"
    if record.exists() and python.exists():
        saved = json.loads(record.read_text())
        if saved["stamp"] == stamp and subprocess.run([str(python), "-c", "import airflow"]).returncode == 0:
            return MwaaVenv(python, saved["image"], saved["installed"], saved["seconds"], reused=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([uv, "venv", "--quiet", "--python", base_python, str(VENV)], check=True)
    seconds = {"image": _install(uv, python, *required_packages(), "-c", str(CONSTRAINTS))}
    image = freeze(uv, python)
    user = scratch / "requirements.txt"
    user.write_text(mwaa_requirements(requirements.read_text(), CONSTRAINTS))
    seconds["requirements"] = _install(uv, python, "-r", str(user), "-c", str(ESSENTIAL))
    venv = MwaaVenv(python, image, freeze(uv, python), seconds)
    record.write_text(json.dumps({"stamp": stamp, "image": image, "installed": venv.installed, "seconds": seconds}))
    return venv
