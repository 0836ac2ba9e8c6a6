"""DagBag load time: our entity DAG factory against dag-factory 1.1.0, for the same DAGs.

For each size N (30 and 1,000 by default) this script generates

* N entity files (``entities/<entity>.yaml`` + ``sql/<entity>/extract.sql``): a handful of columns,
  daily/weekly/monthly/cron schedules, translate on for some, the repo's ``_defaults.yaml`` merged in;
* the equivalent dag-factory 1.1.0 configs: one YAML file per DAG with the same dag_id, the same tasks
  and edges as the DAG our factory builds (read from an unmeasured load of ours; every task a
  ``BashOperator`` running ``etlctl``), the same timetable (``CronDataIntervalTimetable``), start date,
  catchup, tags, owner/retries and run limits, plus a one-line DAG file calling
  ``dagfactory.load_yaml_dags``;

then loads an Airflow ``DagBag`` over our entity DAG files (copies of ``dags/etl_entities.py`` and
``dags/etl_config_errors.py``) and over the dag-factory DAG folder, each in
a fresh Python process (so no import cache favours either side), ``--repeat`` times in alternating
order, and reports the median. Both sides must produce N DAGs with identical dag ids, tasks, edges,
timetables and start dates, and no import errors, or the script fails.

Timed: the ``DagBag(...)`` constructor, i.e. importing the DAG file(s) (and what they import that
Airflow had not imported yet) and building + validating every DAG. The process wall time (interpreter
start, ``import airflow``) is printed too, for context.

Run: ``make bench-dagbag`` or
``uv run --frozen --all-extras --group bench python bench/dagbag_load.py [--sizes 30,1000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Our side: the entity DAG files (other DAG files in dags/, such as the NPS DAG, are not part of this).
OUR_DAG_FILES = ("etl_entities.py", "etl_config_errors.py")
GOAL_SECONDS = 3.0
GOAL_RATIO = 3.0

# -- synthetic entities ---------------------------------------------------------------------------
# (template, columns, dedupe key, order_by, translatable columns)
TEMPLATES: list[tuple[str, list[dict[str, Any]], list[str], str | None, list[str]]] = [
    (
        "company",
        [
            {"name": "company_ref", "type": "string(20)", "target": "company_id"},
            {"name": "company_name", "type": "string(200)", "sanitize": ["trim"]},
            {"name": "legal_form", "type": "string(40)", "sanitize": ["trim", "null_if_empty"]},
            {"name": "industry", "type": "string(120)"},
            {"name": "city", "type": "string(80)"},
            {"name": "share_capital", "type": "decimal(18,2)"},
            {"name": "founded", "type": "date", "target": "founded_on"},
            {"name": "changed_at", "type": "datetime", "target": "updated_at"},
        ],
        ["company_ref"],
        "changed_at",
        ["industry"],
    ),
    (
        "person",
        [
            {"name": "person_id", "type": "string(24)"},
            {"name": "full_name", "type": "string(200)", "sanitize": ["trim"]},
            {"name": "country", "type": "string(2)", "sanitize": ["upper"]},
            {"name": "birth_date", "type": "date"},
            {"name": "occupation", "type": "string(120)"},
            {"name": "modified", "type": "datetime", "target": "updated_at"},
        ],
        ["person_id"],
        "modified",
        ["occupation"],
    ),
    (
        "invoice",
        [
            {"name": "invoice_no", "type": "string(32)", "target": "invoice_number"},
            {"name": "customer_id", "type": "string(24)"},
            {"name": "amount", "type": "decimal(14,2)"},
            {"name": "currency", "type": "string(3)", "sanitize": ["upper"]},
            {"name": "issued_on", "type": "date"},
            {"name": "paid", "type": "boolean"},
            {"name": "updated", "type": "datetime", "target": "updated_at"},
        ],
        ["invoice_no"],
        "updated",
        [],
    ),
    (
        "product",
        [
            {"name": "sku", "type": "string(40)"},
            {"name": "title", "type": "string(300)", "sanitize": ["trim"]},
            {"name": "category", "type": "string(120)"},
            {"name": "price", "type": "decimal(12,2)"},
            {"name": "stock", "type": "integer"},
            {"name": "loaded_seq", "type": "bigint"},
        ],
        ["sku"],
        None,
        ["title", "category"],
    ),
    (
        "shipment",
        [
            {"name": "tracking_id", "type": "string(40)"},
            {"name": "origin", "type": "string(80)"},
            {"name": "destination", "type": "string(80)"},
            {"name": "weight_kg", "type": "float"},
            {"name": "note", "type": "text", "sanitize": ["trim", "null_if_empty"]},
            {"name": "scanned_at", "type": "datetime"},
        ],
        ["tracking_id"],
        "scanned_at",
        [],
    ),
]
SCHEDULES = ["@daily", "@weekly", "@monthly", "0 2 * * *", "30 4 * * 1", "0 6 1 * *"]
TIMEZONES = ["UTC", "UTC", "Europe/Berlin", "America/Sao_Paulo", "Asia/Tokyo"]
REGIONS = ["europe", "americas", "asia", "africa", "oceania"]
PRESETS = {"@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}

DEFAULTS_YAML = """\
# Defaults merged under every entity file (as in include/entities/_defaults.yaml).
owner: data-platform
timezone: UTC
catchup: false
retries: 2
retry_delay_minutes: 5
target:
  conn_id: etl_target
compute:
  job_queue: etl-fargate
  job_definition: etl-stage
  vcpu: 1
  memory_mib: 2048
"""


def entity_spec(i: int) -> dict[str, Any]:
    """The i-th synthetic entity, as the dict written to its YAML file."""
    template, columns, key, order_by, translatable = TEMPLATES[i % len(TEMPLATES)]
    entity = f"{template}_{i:04d}"
    schedule = SCHEDULES[i % len(SCHEDULES)]
    spec: dict[str, Any] = {
        "entity": entity,
        "description": f"{template.title()} records of source system #{i}, {schedule} delta",
        "schedule": schedule,
        "start_date": dt.date(2026, 1, 1) + dt.timedelta(days=i % 300),
        "tags": [REGIONS[i % len(REGIONS)], template],
        "source": {"conn_id": f"src_{entity}", "extract_sql": f"{entity}/extract.sql"},
        "staging": {"table": f"stg_{entity}"},
        "target": {"table": entity},
        "columns": columns,
        "dedupe": {"key": key, "keep": "newest", "order_by": order_by} if order_by else {"key": key, "keep": "last"},
    }
    if i % 7 == 0:
        spec["timezone"] = TIMEZONES[i % len(TIMEZONES)]
    if i % 5 == 0:
        spec["source"]["chunk_rows"] = 500_000
    if translatable and i % 3 == 0:
        spec["translate"] = {"enabled": True, "columns": translatable, "source_language": "auto"}
        spec["tags"].append("translate")
    if i % 4 == 0:
        spec["compute"] = {"memory_mib": 4096, "vcpu": 2}
    return spec


def extract_sql(spec: dict[str, Any]) -> str:
    names = ", ".join(c["name"] for c in spec["columns"])
    table = f"src_{spec['entity']}"
    changed = spec["dedupe"].get("order_by")
    where = f"WHERE {changed} >= :data_interval_start\n  AND {changed} < :data_interval_end\n" if changed else ""
    return f"-- {spec['description']}\nSELECT {names}\nFROM {table}\n{where}"


def write_entities(base: Path, specs: list[dict[str, Any]]) -> tuple[Path, Path]:
    shutil.rmtree(base, ignore_errors=True)
    entities, sql = base / "entities", base / "sql"
    entities.mkdir(parents=True)
    sql.mkdir()
    (entities / "_defaults.yaml").write_text(DEFAULTS_YAML, encoding="utf-8")
    for spec in specs:
        text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=120)
        (entities / f"{spec['entity']}.yaml").write_text(text, encoding="utf-8")
        (sql / spec["entity"]).mkdir()
        (sql / spec["entity"] / "extract.sql").write_text(extract_sql(spec), encoding="utf-8")
    return entities, sql


# -- the same DAGs for dag-factory 1.1.0 ------------------------------------------------------------
BASH = "airflow.providers.standard.operators.bash.BashOperator"
STAGE_COMMAND = (
    "etlctl run-stage --entity {entity} --stage {stage} --run-id '{{{{ run_id }}}}' "
    "--interval-start '{{{{ data_interval_start }}}}' --interval-end '{{{{ data_interval_end }}}}'"
)
DAGFACTORY_DEFAULTS = {
    "default_args": {
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": {"__type__": "datetime.timedelta", "minutes": 5},
    },
    "catchup": False,
    "max_active_runs": 1,
    "max_active_tasks": 1,
}
DAGFACTORY_DAG_FILE = '''\
"""Airflow DAG file of the bench: dag-factory builds one DAG per YAML file in the config folder."""

from dagfactory import load_yaml_dags

CONFIG_DIR = {config_dir!r}
load_yaml_dags(globals_dict=globals(), dags_folder=CONFIG_DIR, defaults_config_path=CONFIG_DIR)
'''


def dagfactory_config(spec: dict[str, Any], shape: dict[str, Any]) -> dict[str, Any]:
    """dag-factory YAML for one entity: its tasks and edges are those of the DAG our factory built.

    Every task is a ``BashOperator`` (setup/teardown and sensor flavours have no dag-factory YAML
    equivalent); the dependencies reproduce our DAG's edges exactly.
    """
    entity = spec["entity"]
    schedule = spec["schedule"]
    upstream: dict[str, list[str]] = {task_id: [] for task_id in shape["tasks"]}
    for up, down in shape["edges"]:
        upstream[down].append(up)
    tasks = []
    for task_id in shape["order"]:
        task: dict[str, Any] = {
            "task_id": task_id,
            "operator": BASH,
            "bash_command": STAGE_COMMAND.format(entity=entity, stage=task_id),
            "doc_md": f"Task `{task_id}` of entity `{entity}`.",
        }
        if upstream[task_id]:
            task["dependencies"] = sorted(upstream[task_id])
        tasks.append(task)
    return {
        f"etl_{entity}": {
            "description": spec["description"],
            "schedule": {
                "__type__": "airflow.sdk.CronDataIntervalTimetable",
                "__args__": [PRESETS.get(schedule, schedule)],
                "timezone": spec.get("timezone", "UTC"),
            },
            "start_date": spec["start_date"],
            "tags": ["entity-etl", f"entity:{entity}", *spec["tags"]],
            "doc_md": f"### Entity `{entity}`: {spec['description']}",
            "tasks": tasks,
        }
    }


def write_dagfactory(base: Path, specs: list[dict[str, Any]], shapes: dict[str, Any]) -> Path:
    """dag-factory configs (one YAML file per DAG) and the DAG file that loads them."""
    shutil.rmtree(base, ignore_errors=True)
    configs, dags = base / "configs", base / "dags"
    configs.mkdir(parents=True)
    dags.mkdir()
    (configs / "defaults.yml").write_text(yaml.safe_dump(DAGFACTORY_DEFAULTS, sort_keys=False), encoding="utf-8")
    for spec in specs:
        config = dagfactory_config(spec, shapes[f"etl_{spec['entity']}"])
        text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=200)
        (configs / f"etl_{spec['entity']}.yml").write_text(text, encoding="utf-8")
    (dags / "etl_dagfactory.py").write_text(DAGFACTORY_DAG_FILE.format(config_dir=str(configs)), encoding="utf-8")
    return dags


# -- one measurement, in a fresh process ----------------------------------------------------------
def child(dag_folder: str, out: str, profile: str | None) -> None:
    t0 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    t1, c1 = time.perf_counter(), time.process_time()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    bag = DagBag(dag_folder=dag_folder)
    t2, c2 = time.perf_counter(), time.process_time()
    if profile:
        profiler.disable()
        profiler.dump_stats(profile)
    shape = {
        dag_id: {
            "tasks": sorted(dag.task_ids),
            "order": [t.task_id for t in dag.topological_sort()],
            "edges": sorted((u, d) for t in dag.tasks for u in [t.task_id] for d in t.downstream_task_ids),
            "timetable": f"{type(dag.timetable).__name__}({getattr(dag.timetable, 'expression', None)}, {getattr(dag.timetable, 'timezone', None)})",
            "start_date": dag.start_date.isoformat() if dag.start_date else None,
        }
        for dag_id, dag in bag.dags.items()
    }
    result = {
        "phases": phase_timings() if profile else {},
        "import_airflow_s": t1 - t0,
        "dagbag_s": t2 - t1,
        "dagbag_cpu_s": c2 - c1,
        "dags": len(bag.dags),
        "import_errors": {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()},
        "shape": shape,
    }
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def phase_timings() -> dict[str, float]:
    """Wall-clock times (no profiler) of one pass of each parse-time phase, modules already imported."""
    from entity_etl.config import loader
    from entity_etl.orchestration.factory import build_entity_dag

    entities_dir, sql_dir = loader.default_paths()
    files = loader.entity_files(entities_dir)
    out: dict[str, float] = {}
    yaml_loader = getattr(loader, "_Yaml12BoolLoader", None)
    if yaml_loader is not None:
        texts = [path.read_text(encoding="utf-8") for path in files]
        t = time.perf_counter()
        for text in texts:
            yaml.load(text, Loader=yaml_loader)  # noqa: S506 - a SafeLoader subclass
        out[f"YAML parsing with the loader's {yaml_loader.__mro__[1].__name__} subclass"] = time.perf_counter() - t
        py_loader = type("PyBench", (yaml.SafeLoader,), {})
        py_loader.yaml_implicit_resolvers = yaml_loader.yaml_implicit_resolvers
        t = time.perf_counter()
        for text in texts:
            yaml.load(text, Loader=py_loader)  # noqa: S506 - a SafeLoader subclass
        out["  the same with a pure-Python SafeLoader subclass, for comparison"] = time.perf_counter() - t
    clear_memo = getattr(loader, "clear_memo", None)
    if clear_memo is not None:
        clear_memo()
    t = time.perf_counter()
    result = loader.load_entities(entities_dir, sql_dir)
    out["load_entities(): read + merge + validate every file (one pass, cold)"] = time.perf_counter() - t
    if clear_memo is not None:
        t = time.perf_counter()
        result = loader.load_entities(entities_dir, sql_dir)
        out["load_entities() again: memoised, so read + SQL file checks only"] = time.perf_counter() - t
    configs = list(result.enabled.values())
    t = time.perf_counter()
    for config in configs:
        build_entity_dag(config)
    out[f"build_entity_dag() x {len(configs)}"] = time.perf_counter() - t
    return out


def comparable(shape: dict[str, Any]) -> dict[str, Any]:
    """A DAG shape without the topological order (any valid order is the same DAG)."""
    return {dag_id: {k: v for k, v in dag.items() if k != "order"} for dag_id, dag in shape.items()}


def measure(
    kind: str, dag_folder: Path, env: dict[str, str], work: Path, profile: Path | None = None
) -> dict[str, Any]:
    out = work / f"result-{re.sub(r'[^a-z-]+', '_', kind)}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(dag_folder), "--out", str(out)]
    if profile:
        cmd += ["--profile-out", str(profile)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"{kind}: the DagBag process failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    result["process_s"] = wall
    return result


def check(kind: str, n: int, result: dict[str, Any]) -> None:
    if result["import_errors"]:
        for path, error in result["import_errors"].items():
            sys.stderr.write(f"--- {kind}: import error in {path}:\n{error}\n")
        raise SystemExit(f"{kind}: the DagBag has import errors")
    if result["dags"] != n:
        raise SystemExit(f"{kind}: expected {n} DAGs, the DagBag has {result['dags']}")


def our_dag_folder(work: Path) -> Path:
    """A folder with copies of the repo's entity DAG files, so that the DagBag parses those and nothing else."""
    folder = work / "ours-dags"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in OUR_DAG_FILES:
        shutil.copy2(ROOT / "dags" / name, folder / name)
    return folder


def base_env(airflow_home: Path, pycache: Path) -> dict[str, str]:
    env = dict(os.environ)
    for leak in ("ETL_INCLUDE_DIR", "ETL_ENTITIES_DIR", "ETL_SQL_DIR", "AIRFLOW__CORE__DAGS_FOLDER"):
        env.pop(leak, None)
    # A deployed Airflow imports from .pyc files. With PYTHONDONTWRITEBYTECODE (set on some dev boxes
    # and CI images) every fresh process would compile Airflow, botocore, ... from source again, which
    # would dominate both sides. Bytecode goes to a private cache, filled by the warm-up loads.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "PYTHONPYCACHEPREFIX": str(pycache),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            # Both sides must finish, so they can be compared: at 1,000 DAGs a single file takes 6-16 s
            # here, close enough to Airflow's default of 30 s on a busy box (see bench/README.md).
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "1800",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


# (label, file name ending, function name): cumulative times read from the profile.
PHASES = [
    ("module imports (the DAG files' own, first use)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("entity files: load_entities(), all calls", "entity_etl/config/loader.py", "load_entities"),
    ("  YAML parsing (_parse_yaml)", "entity_etl/config/loader.py", "_parse_yaml"),
    ("  pydantic validation (model_validate)", "pydantic/main.py", "model_validate"),
    ("DAG building: build_entity_dag()", "entity_etl/orchestration/factory.py", "build_entity_dag"),
    ("  operators (EntityStageOperator.__init__)", "entity_etl/orchestration/stage_operator.py", "__init__"),
    ("  lease tasks (entity_lease_tasks.py __init__)", "entity_etl/orchestration/entity_lease_tasks.py", "__init__"),
    ("  publish task (completion_task.py __init__)", "entity_etl/orchestration/completion_task.py", "__init__"),
    ("  DAG.__init__", "<attrs generated methods airflow.sdk.definitions.dag.DAG>", "__init__"),
    ("  entity_doc_md()", "entity_etl/orchestration/docs.py", "entity_doc_md"),
    ("DagBag checks: bag_dag()", "airflow/dag_processing/dagbag.py", "bag_dag"),
    ("DagBag checks: DAG.validate()", "airflow/sdk/definitions/dag.py", "validate"),
]


def print_profile(path: Path, limit: int) -> None:
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = max(ct for (_cc, _nc, _tt, ct, _callers) in raw.values())

    def cumulative(suffix: str, name: str) -> tuple[float, int]:
        hits = [(v[3], v[1]) for (file, _line, func), v in raw.items() if file.endswith(suffix) and func == name]
        return sum(h[0] for h in hits), sum(h[1] for h in hits)

    print(f"\n--- where DagBag(...) over our entity DAG files spends its time (cProfile, {path.name}) ---")
    print("(the profiler inflates pure-Python code such as PyYAML's SafeLoader more than C code: read shares)")
    print(f"{'total DagBag(...)':<48} {total:7.2f} s  100%")
    for label, suffix, name in PHASES:
        seconds, calls = cumulative(suffix, name)
        if calls:
            print(f"{label:<48} {seconds:7.2f} s  {100 * seconds / total:3.0f}%  ({calls} calls)")
    if limit:
        stats.strip_dirs()
        print(f"\n--- top {limit} functions by cumulative time ---")
        stats.sort_stats("cumulative").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="30,1000", help="comma-separated entity counts (default 30,1000)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process loads per side and size (median)")
    parser.add_argument("--profile", action="store_true", help="always cProfile our load at the largest size")
    parser.add_argument("--profile-lines", type=int, default=25, help="raw cProfile lines to print (0: none)")
    parser.add_argument("--work-dir", type=Path, help="keep generated files here (default: a temp dir, removed)")
    parser.add_argument("--pycache", type=Path, help="bytecode cache dir (default: inside the work dir)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.out, args.profile_out)
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="bench-dagbag-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    airflow_home = work / "airflow-home"
    airflow_home.mkdir(exist_ok=True)
    env = base_env(airflow_home, args.pycache or work / "pycache")
    print(
        f"DagBag load, our entity DAG files vs dag-factory {importlib.metadata.version('dag-factory')}; {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, {args.repeat} fresh processes per cell (median), "
        f"load average {os.getloadavg()[0]:.2f} at start"
    )
    rows = []
    try:
        # Unmeasured loads first, of both sides: Airflow writes airflow.cfg, the bytecode cache fills up
        # and the OS caches site-packages.
        specs = [entity_spec(i) for i in range(6)]
        entities, sql = write_entities(work / "warm-up" / "include", specs)
        our_dags = our_dag_folder(work)
        warm = measure("warm-up", our_dags, {**env, "ETL_ENTITIES_DIR": str(entities), "ETL_SQL_DIR": str(sql)}, work)
        check("ours (warm-up)", len(specs), warm)
        measure("warm-up", write_dagfactory(work / "warm-up" / "dagfactory", specs, warm["shape"]), env, work)
        for n in sizes:
            specs = [entity_spec(i) for i in range(n)]
            entities, sql = write_entities(work / f"n{n}" / "include", specs)
            ours_env = {**env, "ETL_ENTITIES_DIR": str(entities), "ETL_SQL_DIR": str(sql)}
            # An unmeasured load of ours gives the DAGs' shape (tasks, edges) that the dag-factory configs
            # reproduce, so the comparison follows whatever our factory builds today.
            reference = measure("ours (shape)", our_dags, ours_env, work)
            check("ours", n, reference)
            df_dags = write_dagfactory(work / f"n{n}" / "dagfactory", specs, reference["shape"])
            ours: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            for r in range(args.repeat):
                # Alternate the order so neither side always runs second (warmer page cache).
                pair = [("ours", our_dags, ours_env, ours), ("dag-factory", df_dags, env, theirs)]
                for kind, folder, kind_env, sink in pair if r % 2 == 0 else reversed(pair):
                    result = measure(kind, folder, kind_env, work)
                    check(kind, n, result)
                    sink.append(result)
                    print(
                        f"  N={n:>5} run {r + 1}: {kind:<11} DagBag {result['dagbag_s']:7.3f} s "
                        f"(CPU {result['dagbag_cpu_s']:.3f} s; process {result['process_s']:.2f} s)",
                        flush=True,
                    )
            mine, other = comparable(ours[0]["shape"]), comparable(theirs[0]["shape"])
            if mine != other:
                diff = [d for d in mine if mine[d] != other.get(d)]
                raise SystemExit(
                    f"N={n}: the two sides built different DAGs, e.g. {diff[:3]}: "
                    f"{mine.get(diff[0]) if diff else ''} vs {other.get(diff[0]) if diff else ''}"
                )
            rows.append(
                {
                    "n": n,
                    "ours": statistics.median(r["dagbag_s"] for r in ours),
                    "theirs": statistics.median(r["dagbag_s"] for r in theirs),
                    "ours_cpu": statistics.median(r["dagbag_cpu_s"] for r in ours),
                    "theirs_cpu": statistics.median(r["dagbag_cpu_s"] for r in theirs),
                    "ours_process": statistics.median(r["process_s"] for r in ours),
                    "theirs_process": statistics.median(r["process_s"] for r in theirs),
                    "tasks": sum(len(s["tasks"]) for s in ours[0]["shape"].values()),
                }
            )

        print("\nBoth sides: N DAGs, no import errors, identical dag ids, tasks, edges, timetables and start dates.")
        print(
            f"\n{'N':>6} {'tasks':>6} {'ours (s)':>9} {'dag-factory (s)':>16} {'ratio df/ours':>14}"
            f"   {'CPU s, ours / df':>17} {'ratio':>6}   process wall s"
        )
        for row in rows:
            print(
                f"{row['n']:>6} {row['tasks']:>6} {row['ours']:>9.3f} {row['theirs']:>16.3f} "
                f"{row['theirs'] / row['ours']:>13.1f}x   {row['ours_cpu']:>7.3f} / {row['theirs_cpu']:<7.3f} "
                f"{row['theirs_cpu'] / row['ours_cpu']:>5.1f}x   ours {row['ours_process']:.2f}, "
                f"dag-factory {row['theirs_process']:.2f}"
            )
        print("(CPU: the DagBag process's own CPU time, which other work on the machine skews less than wall time)")
        print(f"(load average {os.getloadavg()[0]:.2f} at the end: other work on the machine skews the times)")
        largest = max(rows, key=lambda r: r["n"])
        ok_time = largest["ours"] < GOAL_SECONDS
        ok_ratio = largest["theirs"] / largest["ours"] >= GOAL_RATIO
        print(
            f"\nGoal at N={largest['n']}: under {GOAL_SECONDS:.0f} s -> {'met' if ok_time else 'MISSED'} "
            f"({largest['ours']:.2f} s); at least {GOAL_RATIO:.0f}x faster than dag-factory -> "
            f"{'met' if ok_ratio else 'MISSED'} ({largest['theirs'] / largest['ours']:.1f}x)"
        )
        if args.profile or not (ok_time and ok_ratio):
            n = largest["n"]
            prof = work / f"ours-n{n}.prof"
            profiled = measure(
                "ours (profiled)",
                our_dags,
                {
                    **env,
                    "ETL_ENTITIES_DIR": str(work / f"n{n}" / "include" / "entities"),
                    "ETL_SQL_DIR": str(work / f"n{n}" / "include" / "sql"),
                },
                work,
                profile=prof,
            )
            print_profile(prof, args.profile_lines)
            print("\n--- the same phases timed without the profiler (one pass each, after the load) ---")
            for label, seconds in profiled["phases"].items():
                print(f"{label:<70} {seconds:6.2f} s")
            print(
                f"{'(for reference) the whole DagBag(...) of that process, profiled':<70} {profiled['dagbag_s']:6.2f} s"
            )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
