"""``make demo``: every demo entity DAG through real Airflow 3 on the embedded default.

Embedded default = SQLite for the Airflow metadata, the sources and the target; a local folder for
object storage; the ``local`` compute backend; the offline glossary translator. No AWS, no Docker.
Run it twice: the target contents (checksums printed at the end) are the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def demo_environment(demo_dir: Path) -> dict[str, str]:
    airflow_home = demo_dir / "airflow"
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "ETL_INCLUDE_DIR": str(ROOT / "include"),
        "ETL_OBJECT_STORE_URL": str(demo_dir / "objects"),
        "ETL_STATE_DB": str(demo_dir / "state.db"),
        "ETL_COMPLETION_OUTBOX": str(demo_dir / "entity-loaded.jsonl"),
        "ETL_COMPUTE_BACKEND": "local",
        "ETL_TRANSLATOR": "glossary",
        "AIRFLOW_CONN_ETL_TARGET": json.dumps({"conn_type": "sqlite", "host": str(demo_dir / "target.db")}),
    }
    for entity in ("de", "jp", "br"):
        env[f"AIRFLOW_CONN_{entity.upper()}_SOURCE"] = json.dumps(
            {"conn_type": "sqlite", "host": str(demo_dir / "sources" / f"source_{entity}.db")}
        )
    return env


def table_checksum(db: Path, table: str) -> tuple[int, str]:
    """Row count and a SHA-256 over every column of every row, in key order."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    return len(rows), digest


def main() -> int:
    warnings.simplefilter("ignore")  # Airflow's deprecation chatter is not the demo's output
    demo_dir = Path(os.environ.get("DEMO_DIR", ROOT / ".demo")).absolute()
    (demo_dir / "airflow").mkdir(parents=True, exist_ok=True)
    os.environ.update(demo_environment(demo_dir))
    sys.path.insert(0, str(ROOT))

    from demo.sources import DEMO_INTERVALS, make_all

    t0 = time.perf_counter()
    make_all(demo_dir / "sources")
    print(f"demo: sample sources written to {demo_dir / 'sources'}", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    print("demo: Airflow metadata database ready (SQLite)", flush=True)

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from entity_etl.runtime.stats import StageStats, format_table

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            print(f"demo: import error in {path}: {err}", file=sys.stderr)
        return 1
    from entity_etl.config.loader import load_entities

    configs = load_entities().entities
    failures = 0
    summary = []
    for entity, (start, end) in DEMO_INTERVALS.items():
        dag = bag.get_dag(f"etl_{entity}")
        if dag is None:
            print(f"demo: DAG etl_{entity} not found", file=sys.stderr)
            return 1
        print(f"\ndemo: running etl_{entity} for [{start:%Y-%m-%d}, {end:%Y-%m-%d}) through Airflow ...", flush=True)
        dag_run = dag.test(logical_date=end)
        with create_session() as session:
            xcoms = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag.dag_id, XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
                )
            ).all()
            stage_ids = set(configs[entity].stages)
            stats = [StageStats.from_dict(XComModel.deserialize_value(x)) for x in xcoms if x.task_id in stage_ids]
        order = {t: i for i, t in enumerate(dag.task_ids)}
        stats.sort(key=lambda s: order.get(s.stage, 99))
        print(f"etl_{entity} run {dag_run.run_id}: {dag_run.state}")
        print(format_table(stats))
        for s in stats:
            if s.stage == "translate":
                print(
                    f"  translate: {s.details.get('translator')}; {s.details.get('translated')} translated, "
                    f"{s.details.get('untranslated')} untranslated, {s.details.get('cache_hits')} from cache"
                )
        if str(dag_run.state) != "success":
            failures += 1
        summary.append(entity)

    print("\ndemo: target tables (row count, checksum of all columns; identical on every run):")
    for entity in summary:
        rows, digest = table_checksum(demo_dir / "target.db", configs[entity].target.table)
        print(f"  {configs[entity].target.table:<12} {rows:>6} rows  sha256:{digest}")
    from entity_etl.cli import format_runs
    from entity_etl.runtime.run_store import open_run_store

    print("\ndemo: run store records of the last de run (etlctl runs --entity de):")
    records = open_run_store().by_entity("de")
    last = records[-1].run_id if records else ""
    print(format_runs([r for r in records if r.run_id == last]))
    outbox = demo_dir / "entity-loaded.jsonl"
    if outbox.exists():
        print(f"\ndemo: last 'entity loaded' event ({outbox}):")
        print(outbox.read_text(encoding="utf-8").strip().splitlines()[-1])
    from demo.survey_demo import run_survey_demo

    failures += run_survey_demo(bag, demo_dir)
    print(f"\ndemo: finished in {time.perf_counter() - t0:.1f}s; Airflow home {demo_dir / 'airflow'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
