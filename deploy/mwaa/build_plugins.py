"""Build Amazon MWAA's ``plugins.zip``: the ``entity_etl`` package.

    python deploy/mwaa/build_plugins.py [-o build/mwaa/plugins.zip]

MWAA unzips ``plugins.zip`` into ``$AIRFLOW_HOME/plugins`` (``/usr/local/airflow/plugins``) on every
container, and Airflow puts that folder on ``sys.path`` of every component: the DAG processor, the
workers, the scheduler and the triggerer (which imports the Deadline Alert callback
``entity_etl.orchestration.notifier.SnsEventNotifier`` by name, with no DAG folder on its path).
The zip holds:

* ``entity_etl/``: ``plugins/entity_etl`` as it is, without byte code (the NPS DAG's survey reader,
  ``entity_etl.survey_reader``, included);
* ``entity_etl_plugin.py``: the one Airflow plugin (``plugins/entity_etl_plugin.py``): the run-note
  listener and the "Entities" page of the UI;
* ``.airflowignore`` (the same as ``plugins/.airflowignore``): the package is not plugin files. Airflow's
  plugin manager would otherwise run every ``.py`` file in the plugins folder as a top-level module
  named after the file (``loader``, ``settings``, ``stages`` ...), in every component.

The build is reproducible: the same sources give the same bytes (sorted, uncompressed entries with
fixed timestamps and permissions). So ``deploy.py`` uploads it, and asks for an environment update,
only when the code changed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

AIRFLOWIGNORE = """\
# An importable package, not plugin files: Airflow's plugin manager loads entity_etl_plugin.py only.
# The plugins folder is on sys.path, so "import entity_etl" still works.
entity_etl/
"""

#: The plugin module, at the top of the plugins folder where the plugin manager looks.
PLUGIN_MODULE = "entity_etl_plugin.py"

#: 1980-01-01 00:00:00, the earliest time a zip entry can hold: no build time in the archive.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _package_files(root: Path) -> Iterator[tuple[str, Path]]:
    package = root / "plugins" / "entity_etl"
    if not (package / "__init__.py").is_file():
        raise FileNotFoundError(f"{package / '__init__.py'} not found: is {root} the repository root?")
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package.parent)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        yield relative.as_posix(), path


def plugins_zip_entries(root: Path = ROOT) -> dict[str, bytes]:
    """Archive name -> content, for every entry of ``plugins.zip``."""
    entries: dict[str, bytes] = {
        ".airflowignore": AIRFLOWIGNORE.encode(),
        PLUGIN_MODULE: (root / "plugins" / PLUGIN_MODULE).read_bytes(),
    }
    for name, path in _package_files(root):
        entries[name] = path.read_bytes()
    return entries


def plugins_zip_bytes(root: Path = ROOT) -> bytes:
    """``plugins.zip``, byte for byte the same for the same sources."""
    buffer = io.BytesIO()
    # Stored, not deflated: about 300 kB either way, and the bytes then do not depend on the zlib build
    # of the machine that deploys (a different one would look like a code change).
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in sorted(plugins_zip_entries(root).items()):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # Unix, so that the mode below is read as one
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            archive.writestr(info, content)
    return buffer.getvalue()


def build(out: Path, root: Path = ROOT) -> str:
    """Write ``plugins.zip`` to ``out``; return its SHA-256."""
    data = plugins_zip_bytes(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "build" / "mwaa" / "plugins.zip")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    args = parser.parse_args(argv)
    digest = build(args.out, args.root)
    count = len(plugins_zip_entries(args.root))
    print(f"{args.out}: {count} files, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
