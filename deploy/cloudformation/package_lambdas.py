"""Build the Lambda zips that deploy/cloudformation/entity-etl.yaml deploys from S3.

    python deploy/cloudformation/package_lambdas.py [--out DIR]

writes, and prints as ``NotificationsCodeKey=...`` / ``SurveyCodeKey=...`` lines (the template's
parameters, with a ``lambdas/`` key prefix):

* ``notifications-<hash>.zip``: the modules of ``lambdas/notifications`` (``handler.py`` and the
  modules it imports) at the zip root (handler ``handler.handler``), with the files it shares with
  ``entity_etl`` taken from there (:data:`NOTIFICATIONS_SHARED`: the runtime's ``redaction.py`` and
  the event contract ``notification_contract.py``, symlinks in the repository);
* ``survey-<hash>.zip``: the ``survey/`` package at the zip root (handlers ``survey.<module>.handler``),
  without ``infra/``, ``events/``, the README or byte code, with :data:`SURVEY_SHARED` (``responses.py``,
  the survey reader the NPS DAG imports as ``entity_etl.survey_reader``). Powertools comes from the
  public layer.

The zips are reproducible (sorted entries, fixed timestamps and modes), and ``<hash>`` is the first
12 hex digits of the zip's SHA-256, so an unchanged handler keeps its key and CloudFormation leaves
the function alone, while a changed one gets a new key and is updated. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"
_EPOCH = (1980, 1, 1, 0, 0, 0)
PLUGINS = ROOT / "plugins" / "entity_etl"

#: Zip entry -> the ``entity_etl`` file it is a copy of (in the repository, a symlink to it): read
#: from there, so the zip is right on a checkout that does not keep symlinks.
NOTIFICATIONS_SHARED = {
    "redaction.py": PLUGINS / "runtime" / "redaction.py",
    "notification_contract.py": PLUGINS / "notification_contract.py",
}
SURVEY_SHARED = {"survey/responses.py": PLUGINS / "survey_reader.py"}


def _zip(files: Iterable[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def notifications_zip() -> bytes:
    # Flat: the handler imports the modules next to it (the zip root is on the runtime's sys.path).
    files = {path.name: path for path in (LAMBDAS / "notifications").glob("*.py")}
    return _zip({**files, **NOTIFICATIONS_SHARED}.items())


def survey_zip() -> bytes:
    package = LAMBDAS / "survey"
    files = {f"survey/{path.relative_to(package).as_posix()}": path for path in package.rglob("*.py")}
    return _zip({**files, **SURVEY_SHARED}.items())


def content_key(name: str, data: bytes) -> str:
    return f"lambdas/{name}-{hashlib.sha256(data).hexdigest()[:12]}.zip"


def build(out: Path) -> dict[str, str]:
    """Write both zips under ``out`` (at their keys) and return the template parameters naming them."""
    keys: dict[str, str] = {}
    for parameter, name, data in (
        ("NotificationsCodeKey", "notifications", notifications_zip()),
        ("SurveyCodeKey", "survey", survey_zip()),
    ):
        key = content_key(name, data)
        target = out / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        keys[parameter] = key
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="folder to write lambdas/*.zip under")
    args = parser.parse_args(argv)
    for parameter, key in build(args.out).items():
        print(f"{parameter}={key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
