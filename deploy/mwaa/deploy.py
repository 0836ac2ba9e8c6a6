"""Deploy entity-etl to the S3 bucket of an Amazon MWAA environment (Airflow 3.3.1).

    python deploy/mwaa/deploy.py --bucket BUCKET [--environment NAME] [--settings FILE] [--dry-run] [--delete]

What goes where (MWAA's default paths; see deploy/mwaa/README.md):

    s3://BUCKET/dags/<file>            dags/ (the DAG files)           synced by MWAA, no update needed
    s3://BUCKET/dags/include/<file>    include/ (entity files, SQL,    synced by MWAA, no update needed
                                       glossary): ETL_INCLUDE_DIR
    s3://BUCKET/plugins.zip            entity_etl (build_plugins.py)   read on an environment update
    s3://BUCKET/requirements.txt       deploy/mwaa/requirements.txt    read on an environment update
    s3://BUCKET/startup.sh             deploy/mwaa/startup.sh, plus    read on an environment update
                                       the --settings variables

Only what differs from the bucket is uploaded (by SHA-256, kept in each object's metadata, or the
MD5 ETag). When plugins.zip, requirements.txt or startup.sh changed, it prints the
``aws mwaa update-environment`` command with their new S3 object versions; otherwise it says that no
environment update is needed. Within dags/, the SQL goes up before the entity files, and both before
the DAG files, so MWAA's sync never shows an entity file whose query is missing.

boto3 reads the endpoint, region and credentials from the environment (``AWS_ENDPOINT_URL`` points it
at an emulator).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # run as a script: this folder is sys.path[0]
    from build_plugins import plugins_zip_bytes
except ImportError:  # imported as deploy.mwaa.deploy, with the repository root on sys.path (the tests)
    from deploy.mwaa.build_plugins import plugins_zip_bytes

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: Variables that ``--settings`` may not set: MWAA reserves them (its startup-script guide) or this
#: deployment sets them itself.
RESERVED = frozenset(
    {
        "AIRFLOW_HOME",
        "AIRFLOW_VERSION",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "ETL_INCLUDE_DIR",
        "PATH",
        "PYTHONPATH",
        "PYTHONUNBUFFERED",
        "SQL_ALCHEMY_CONN",
    }
)
_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class DeployError(Exception):
    """A deployment that cannot go ahead (bad settings file, missing bucket ...)."""


@dataclass(frozen=True)
class Artifact:
    key: str
    data: bytes
    #: True for plugins.zip, requirements.txt and startup.sh: MWAA reads them only on an environment update.
    needs_update: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


@dataclass
class Result:
    bucket: str
    dry_run: bool
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Objects under dags/include/ that no longer exist here (deleted only with --delete).
    stale: list[str] = field(default_factory=list)
    #: The environment artefacts (plugins.zip ...) that were (or would be) uploaded.
    update_reasons: list[str] = field(default_factory=list)
    #: S3 object version of each environment artefact after the deployment (None: unversioned bucket).
    versions: dict[str, str | None] = field(default_factory=dict)

    @property
    def environment_update_needed(self) -> bool:
        return bool(self.update_reasons)


def _files(directory: Path) -> Iterable[Path]:
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        yield path


def _upload_order(key: str) -> tuple[int, str]:
    """SQL and other include files first, then the entity files (``_defaults`` first), then the DAG files."""
    if "/include/entities/" in key:
        return (1, key.replace("/_", "/\0"))
    if "/include/" in key:
        return (0, key)
    return (2, key)


def parse_settings(text: str, source: str = "settings") -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments and blank lines allowed) for startup.sh to export."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not sep or not _NAME.fullmatch(name):
            raise DeployError(f"{source}:{number}: expected NAME=value, got {raw!r}")
        if name in RESERVED:
            raise DeployError(f"{source}:{number}: {name} is reserved (by MWAA or by this deployment)")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        settings[name] = value
    return settings


def render_startup(template: str, settings: dict[str, str], source: str = "settings") -> str:
    """``startup.sh`` with an ``export`` line per setting appended."""
    if not settings:
        return template
    lines = [template.rstrip("\n"), "", f"# Deployment settings (from {source})."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def desired_objects(
    root: Path = ROOT,
    *,
    dags_prefix: str = "dags",
    plugins_key: str = "plugins.zip",
    requirements_key: str = "requirements.txt",
    startup_key: str = "startup.sh",
    settings: dict[str, str] | None = None,
    settings_source: str = "settings",
) -> list[Artifact]:
    """Every object of the deployment, in upload order."""
    prefix = dags_prefix.strip("/")
    synced = [
        Artifact(f"{prefix}/{path.relative_to(root / 'dags').as_posix()}", path.read_bytes())
        for path in _files(root / "dags")
    ]
    synced += [
        Artifact(f"{prefix}/include/{path.relative_to(root / 'include').as_posix()}", path.read_bytes())
        for path in _files(root / "include")
    ]
    synced.sort(key=lambda artifact: _upload_order(artifact.key))
    startup = render_startup((HERE / "startup.sh").read_text(encoding="utf-8"), settings or {}, settings_source)
    environment = [
        Artifact(plugins_key, plugins_zip_bytes(root), needs_update=True),
        Artifact(requirements_key, (HERE / "requirements.txt").read_bytes(), needs_update=True),
        Artifact(startup_key, startup.encode(), needs_update=True),
    ]
    return synced + environment


def _remote_etags(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    etags: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            etags[obj["Key"]] = obj["ETag"].strip('"')
    return etags


def _head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        response: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return response


def _same(artifact: Artifact, etag: str | None, head: Callable[[], dict[str, Any] | None]) -> tuple[bool, bool]:
    """(exists, unchanged). The ETag is the MD5 only for plain single-part uploads (not SSE-KMS), so a
    differing ETag is settled by the SHA-256 this script keeps in the object's metadata."""
    if etag is not None and etag == artifact.md5:
        return True, True
    response = head()
    if response is None:
        return False, False
    return True, response.get("Metadata", {}).get("sha256") == artifact.sha256


def deploy(
    bucket: str,
    *,
    root: Path = ROOT,
    dags_prefix: str = "dags",
    plugins_key: str = "plugins.zip",
    requirements_key: str = "requirements.txt",
    startup_key: str = "startup.sh",
    settings: dict[str, str] | None = None,
    settings_source: str = "settings",
    environment: str | None = None,
    dry_run: bool = False,
    delete: bool = False,
    s3: Any = None,
    out: Callable[[str], None] = print,
) -> Result:
    """Bring the bucket in line with this checkout; see the module docstring."""
    import boto3
    from botocore.exceptions import ClientError

    s3 = s3 or boto3.client("s3")
    prefix = dags_prefix.strip("/")
    try:
        versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    except ClientError as exc:
        raise DeployError(f"bucket {bucket!r}: {exc.response.get('Error', {}).get('Message') or exc}") from None
    if versioning != "Enabled":
        out(
            f"warning: versioning is not enabled on s3://{bucket}; MWAA requires it (an environment names "
            "plugins.zip, requirements.txt and startup.sh by S3 object version)"
        )

    artifacts = desired_objects(
        root,
        dags_prefix=prefix,
        plugins_key=plugins_key,
        requirements_key=requirements_key,
        startup_key=startup_key,
        settings=settings,
        settings_source=settings_source,
    )
    remote = _remote_etags(s3, bucket, f"{prefix}/")
    result = Result(bucket=bucket, dry_run=dry_run)
    heads: dict[str, dict[str, Any] | None] = {}

    def check(artifact: Artifact) -> tuple[Artifact, bool, bool]:
        def head() -> dict[str, Any] | None:
            heads[artifact.key] = _head(s3, bucket, artifact.key)
            return heads[artifact.key]

        if not artifact.needs_update and artifact.key not in remote:
            return artifact, False, False  # not in the dags/ listing: new, no HEAD needed
        # plugins.zip & co. are outside the dags/ listing: always HEAD them (their version is needed too).
        etag = None if artifact.needs_update else remote.get(artifact.key)
        exists, unchanged = _same(artifact, etag, head)
        return artifact, exists, unchanged

    with ThreadPoolExecutor(max_workers=8) as pool:
        checked = list(pool.map(check, artifacts))

    to_upload: list[tuple[Artifact, str]] = []
    for artifact, exists, unchanged in checked:
        if unchanged:
            result.unchanged.append(artifact.key)
            if artifact.needs_update:
                response = heads.get(artifact.key) or {}
                result.versions[artifact.key] = response.get("VersionId")
        else:
            to_upload.append((artifact, "changed" if exists else "new"))

    wanted = {artifact.key for artifact in artifacts}
    result.stale = sorted(key for key in remote if key.startswith(f"{prefix}/include/") and key not in wanted)

    verb = "would upload" if dry_run else "upload"
    for artifact, reason in to_upload:
        out(f"{verb} s3://{bucket}/{artifact.key} ({reason})")
        if artifact.needs_update:
            result.update_reasons.append(artifact.key)
    for key in result.stale:
        if delete:
            out(f"{'would delete' if dry_run else 'delete'} s3://{bucket}/{key} (no longer in include/)")
        else:
            out(f"stale s3://{bucket}/{key}: no longer in include/ (kept; --delete removes it)")

    if not dry_run:
        phases: dict[int, list[Artifact]] = {}
        for artifact, _ in to_upload:
            phases.setdefault(0 if artifact.needs_update else _upload_order(artifact.key)[0] + 1, []).append(artifact)

        def put(artifact: Artifact) -> None:
            response = s3.put_object(
                Bucket=bucket,
                Key=artifact.key,
                Body=artifact.data,
                Metadata={"sha256": artifact.sha256},
                ContentMD5=base64.b64encode(bytes.fromhex(artifact.md5)).decode(),
            )
            result.uploaded.append(artifact.key)
            if artifact.needs_update:
                result.versions[artifact.key] = response.get("VersionId")

        with ThreadPoolExecutor(max_workers=8) as pool:
            for phase in sorted(phases):  # one phase after the other: see _upload_order
                list(pool.map(put, phases[phase]))
        if delete:
            for key in result.stale:
                s3.delete_object(Bucket=bucket, Key=key)
                result.deleted.append(key)
        position = {artifact.key: index for index, artifact in enumerate(artifacts)}
        result.uploaded.sort(key=position.__getitem__)

    done = len(to_upload)
    out(
        f"{'dry run: ' if dry_run else ''}{done} to upload, {len(result.unchanged)} unchanged"
        + (f", {len(result.stale)} stale" if result.stale else "")
        + ("" if dry_run else f"; {len(result.uploaded)} uploaded, {len(result.deleted)} deleted")
    )
    if result.environment_update_needed:
        changed = ", ".join(result.update_reasons)
        if dry_run:
            out(f"An environment update would be needed: {changed} would change.")
        else:
            out(f"Environment update needed: {changed} changed, and MWAA reads them only on an update:")
            out(update_command(environment, plugins_key, requirements_key, startup_key, result.versions))
    else:
        out(
            "No environment update needed: plugins.zip, requirements.txt and startup.sh are unchanged; "
            f"MWAA syncs s3://{bucket}/{prefix}/ to the containers by itself."
        )
    return result


def update_command(
    environment: str | None, plugins_key: str, requirements_key: str, startup_key: str, versions: dict[str, Any]
) -> str:
    def version(key: str) -> str:
        return shlex.quote(str(versions.get(key) or "<version id: enable bucket versioning>"))

    return " \\\n".join(
        [
            f"  aws mwaa update-environment --name {shlex.quote(environment or '<environment name>')}",
            f"    --plugins-s3-path {shlex.quote(plugins_key)} --plugins-s3-object-version {version(plugins_key)}",
            f"    --requirements-s3-path {shlex.quote(requirements_key)}"
            f" --requirements-s3-object-version {version(requirements_key)}",
            f"    --startup-script-s3-path {shlex.quote(startup_key)}"
            f" --startup-script-s3-object-version {version(startup_key)}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Deploy entity-etl to an Amazon MWAA environment's S3 bucket (see deploy/mwaa/README.md)."
    )
    parser.add_argument("--bucket", required=True, help="the environment's S3 bucket (its source bucket)")
    parser.add_argument("--environment", help="the MWAA environment's name, for the update command it prints")
    parser.add_argument("--settings", type=Path, help="NAME=value lines that startup.sh exports (ETL_* settings)")
    parser.add_argument("--dags-prefix", default="dags", help="the environment's DAGs folder in the bucket")
    parser.add_argument("--plugins-key", default="plugins.zip")
    parser.add_argument("--requirements-key", default="requirements.txt")
    parser.add_argument("--startup-key", default="startup.sh")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    parser.add_argument("--delete", action="store_true", help="delete objects under dags/include/ not in include/")
    args = parser.parse_args(argv)
    try:
        settings = None
        if args.settings:
            settings = parse_settings(args.settings.read_text(encoding="utf-8"), str(args.settings))
        deploy(
            args.bucket,
            root=args.root,
            dags_prefix=args.dags_prefix,
            plugins_key=args.plugins_key,
            requirements_key=args.requirements_key,
            startup_key=args.startup_key,
            settings=settings,
            settings_source=str(args.settings) if args.settings else "settings",
            environment=args.environment,
            dry_run=args.dry_run,
            delete=args.delete,
        )
    except (DeployError, OSError) as exc:
        print(f"deploy.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
