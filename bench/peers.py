"""The pipeline against the tools a data engineer would pick instead: Sling and dlt, side by side.

On the server and data of ``bench/etl_pipeline.py`` (its private MariaDB, its generated source rows with
every odd value, its entity and ``etlctl`` stage processes), each tool moves the day's rows into its own
keyed target with the same semantics: the newest row per key (``updated_at``), the entity's renames and
sanitizers applied. The peers read a view of the source that does the renames and sanitizers (``trim``,
``null_if_empty``) and the interval filter in the server, so that all they do is move and merge:

* ours: cleanup -> extract -> load_staging -> dedupe -> load_target, one ``etlctl run-stage`` process each;
* Sling (the ``sling-linux-amd64`` wheel's binary): ``--mode incremental --primary-key company_id
  --update-key updated_at`` into a MariaDB table (its upsert);
* dlt: ``sql_database``'s ``sql_table`` with the fastest backend that works (connectorx, then pyarrow,
  then sqlalchemy), ``write_disposition`` merge (``delete-insert``, ``dedup_sort`` newest ``updated_at``)
  through its ``sqlalchemy`` destination (MySQL dialect, PyMySQL).

The peers live in their own virtualenv, ``.bench/peers-venv``, which this script creates with uv; they
never enter the project's lock and nothing in the runtime imports them. Each target starts empty. Every
target is verified exactly against the newest source rows (row count and a checksum of every column);
where a peer's target differs, the script names the columns and shows the odd values it changed. It
prints wall time, rows/s, peak RSS and CPU per tool (the tool's processes, not the server's), for
``--rounds`` rounds with the order alternating, and the ratios to ours.

Run: ``make bench-peers ROWS=2000000`` or ``uv run --frozen --all-extras python bench/peers.py --rows 200000``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "plugins"))

import etl_pipeline as etl  # noqa: E402

VENV = ROOT / ".bench" / "peers-venv"
# Pinned so that two runs compare the same peers; the versions are printed with the figures.
PEER_PACKAGES = [
    "sling-linux-amd64==1.4.11",
    "dlt[sqlalchemy,sql_database]==1.31.0",
    "connectorx==0.4.6",
    "pyarrow==26.0.1",
    "pymysql==1.2.4",
    "sqlalchemy==2.1.9",
]
DLT_BACKENDS = ["connectorx", "pyarrow", "sqlalchemy"]
VIEW = "peers_src"
EXPECTED_TABLE = "peers_expected"
SLING_TABLE = "sling_target"
DLT_DATASET = "bench_dlt"
USER, PASSWORD = "bench", "bench-peers"
# Sling 1.4 does not deduplicate a run's rows by key: the newest per key by a window function, in the
# server. {incremental_where_cond} is Sling's own placeholder (required with --update-key and custom SQL).
SLING_STREAM = (
    "SELECT {names} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY updated_at DESC) AS rn "
    "FROM {view} WHERE {{incremental_where_cond}}) newest WHERE rn = 1"
)
KEY = "company_id"

DLT_SCRIPT = """\
import sys
import dlt
from dlt.sources.sql_database import sql_table

src, tgt, backend, dataset, pipelines_dir = sys.argv[1:6]
table = sql_table(credentials=src, table="{view}", backend=backend, chunk_size=50_000, reflection_level="full")
table.apply_hints(
    primary_key="{key}",
    write_disposition={{"disposition": "merge", "strategy": "delete-insert"}},
    columns={{"updated_at": {{"dedup_sort": "desc"}}}},
)
pipeline = dlt.pipeline(
    pipeline_name="bench_peers", destination=dlt.destinations.sqlalchemy(tgt), dataset_name=dataset,
    pipelines_dir=pipelines_dir,
)
info = pipeline.run(table)
print(info)
"""


# -- the peers' virtualenv -------------------------------------------------------------------------
def ensure_venv() -> dict[str, str]:
    """Create .bench/peers-venv with uv (this interpreter's Python) and install the pinned peers; versions."""
    python = VENV / "bin" / "python"
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not python.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(VENV)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *PEER_PACKAGES], check=True)
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, dlt, connectorx, pyarrow; "
            "print(m.version('dlt'), m.version('connectorx'), m.version('pyarrow'), m.version('sling-linux-amd64'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return dict(zip(["dlt", "connectorx", "pyarrow", "sling"], out, strict=True))


def sling_binary() -> Path:
    found = sorted(VENV.glob("lib/python*/site-packages/sling_linux_amd64/bin/sling-linux-amd64"))
    if not found:
        raise SystemExit(f"no sling binary under {VENV} (the sling-linux-amd64 wheel)")
    found[0].chmod(0o755)
    return found[0]


# -- the shared setup ------------------------------------------------------------------------------
def prepare_server(server: etl.MariaDB) -> None:
    """The peers' source view (renames, sanitizers, interval) and a TCP user for them."""
    start, end = etl.interval_params()
    exprs = ", ".join(
        f"{expr} AS {target}" for expr, target in zip(etl.sanitized_exprs(), etl.TARGET_NAMES, strict=True)
    )
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(
        f"CREATE VIEW {etl.SOURCE_DB}.{VIEW} AS SELECT {exprs} FROM {etl.SOURCE_DB}.{etl.SOURCE_TABLE} "
        f"WHERE updated_at >= '{start}' AND updated_at < '{end}'"
    )
    cur.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
    cur.execute(f"GRANT ALL ON *.* TO '{USER}'@'127.0.0.1'")
    conn.commit()
    conn.close()


def add_odd_rows(server: etl.MariaDB, rows: int) -> int:
    """The odd values of the tests (tests/support/odd_values.py), one source row each, in every text column."""
    from support.odd_values import ODD_TEXT

    conn = server.connect()
    cur = conn.cursor()
    start, _end = etl.interval_params()
    for i, value in enumerate(ODD_TEXT):
        cur.execute(
            f"INSERT INTO {etl.SOURCE_DB}.{etl.SOURCE_TABLE} (id, company_ref, company_name, legal_form, industry, "
            "city, share_capital, founded, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (rows + 1 + i, f"ODD-{i:04d}", value, value, value, value, "-0.01", "1900-01-01", start),
        )
    conn.commit()
    conn.close()
    return len(ODD_TEXT)


def materialize_expected(server: etl.MariaDB) -> tuple[int, int]:
    """The newest source row per key, sanitized and renamed, as a keyed table for the per-column checks."""
    exprs = ", ".join(f"{e} AS {t}" for e, t in zip(etl.sanitized_exprs(), etl.TARGET_NAMES, strict=True))
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(
        f"CREATE TABLE {etl.TARGET_DB}.{EXPECTED_TABLE} (PRIMARY KEY ({KEY})) AS SELECT {exprs} FROM "
        f"(SELECT *, ROW_NUMBER() OVER (PARTITION BY company_ref ORDER BY updated_at DESC) AS rn "
        f"FROM {etl.SOURCE_DB}.{etl.SOURCE_TABLE}) ranked WHERE rn = 1"
    )
    conn.commit()
    cur.execute(etl.checksum_sql(etl.TARGET_NAMES, f"{etl.TARGET_DB}.{EXPECTED_TABLE}"))
    rows, crc = cur.fetchone()
    conn.close()
    return int(rows), int(crc)


def column_checksums(cur: Any, table: str) -> dict[str, int]:
    sums = ", ".join(
        f"BIT_XOR(CRC32(CONCAT_WS('|', CAST({KEY} AS CHAR), IFNULL(CAST({n} AS CHAR), '<NULL>'))))"
        for n in etl.TARGET_NAMES
    )
    cur.execute(f"SELECT {sums} FROM {table}")
    return dict(zip(etl.TARGET_NAMES, (int(v) for v in cur.fetchone()), strict=True))


def verify(server: etl.MariaDB, table: str, expected: tuple[int, int]) -> dict[str, Any]:
    """Row count and checksum; where they differ, the columns that differ and examples of changed values."""
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(etl.checksum_sql(etl.TARGET_NAMES, table))
    rows, crc = (int(v) for v in cur.fetchone())
    cur.execute(f"SELECT COUNT(*) - COUNT(DISTINCT {KEY}) FROM {table}")
    duplicates = int(cur.fetchone()[0])
    result: dict[str, Any] = {"rows": rows, "exact": (rows, crc) == expected, "columns": {}, "duplicates": duplicates}
    if not result["exact"]:
        want = column_checksums(cur, f"{etl.TARGET_DB}.{EXPECTED_TABLE}")
        got = column_checksums(cur, table)
        for name in etl.TARGET_NAMES:
            if want[name] != got[name]:
                result["columns"][name] = changed_values(cur, table, name)
    conn.close()
    return result


def changed_values(cur: Any, table: str, name: str, limit: int = 6) -> list[tuple[str | None, str | None]]:
    """Distinct (expected, got) pairs of one column, joined on the key: which odd values a peer changes."""
    try:
        cur.execute(
            f"SELECT DISTINCT CAST(e.{name} AS CHAR), CAST(t.{name} AS CHAR) FROM {etl.TARGET_DB}.{EXPECTED_TABLE} e "
            f"JOIN {table} t ON CAST(t.{KEY} AS CHAR) COLLATE utf8mb4_bin = e.{KEY} "
            f"WHERE NOT (CAST(e.{name} AS CHAR) <=> CAST(t.{name} AS CHAR) COLLATE utf8mb4_bin) LIMIT {limit}"
        )
        return [tuple(v.decode() if isinstance(v, bytes) else v for v in row) for row in cur.fetchall()]
    except Exception as exc:  # a diagnosis only; the mismatch itself is already recorded
        return [("<could not compare>", str(exc)[:120])]


# -- measuring one tool ----------------------------------------------------------------------------
def measured(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Run ``cmd``; wall, CPU (user+system) and peak RSS of the process and the children it waited for."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {log.read_text(errors='replace')[-2500:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def run_ours(server: etl.MariaDB, env: dict[str, str], work: Path, number: int) -> dict[str, float]:
    conn = server.connect()
    conn.cursor().execute(f"DROP TABLE IF EXISTS {etl.TARGET_DB}.{etl.TARGET_TABLE}")
    conn.commit()
    conn.close()
    run_id = f"peers_{number}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    stages = [etl.run_stage(stage, env, work, run_id) for stage in etl.STAGES]
    return {
        "wall_s": sum(s["wall_s"] for s in stages),
        "cpu_s": sum(s["cpu_s"] for s in stages),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages),
    }


def tcp_url(server: etl.MariaDB, scheme: str, db: str) -> str:
    return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{server.port}/{db}"


def run_sling(server: etl.MariaDB, work: Path) -> dict[str, float]:
    conn = server.connect()
    conn.cursor().execute(f"DROP TABLE IF EXISTS {etl.TARGET_DB}.{SLING_TABLE}")
    # A keyed target, as ours is. Into a table it creates itself, Sling's first incremental run inserts
    # every row, duplicate keys included; into a keyed one, its upsert (delete, then insert from its temp
    # table) fails with "Error 1062 Duplicate entry" on a key that is twice in one run. So the newest row
    # per key is chosen in its source query (SLING_STREAM), by the server.
    conn.cursor().execute(f"CREATE TABLE {etl.TARGET_DB}.{SLING_TABLE} LIKE {etl.TARGET_DB}.{EXPECTED_TABLE}")
    conn.commit()
    conn.close()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work / "sling-home"),
        "SLING_HOME_DIR": str(work / "sling-home"),
        "SLING_DISABLE_TELEMETRY": "true",
        "SRC_DB": tcp_url(server, "mysql", etl.SOURCE_DB),
        "TGT_DB": tcp_url(server, "mysql", etl.TARGET_DB),
    }
    cmd = [
        str(sling_binary()),
        "run",
        "--src-conn",
        "SRC_DB",
        "--src-stream",
        SLING_STREAM.format(names=", ".join(etl.TARGET_NAMES), view=f"{etl.SOURCE_DB}.{VIEW}", key=KEY),
        "--tgt-conn",
        "TGT_DB",
        "--tgt-object",
        f"{etl.TARGET_DB}.{SLING_TABLE}",
        "--mode",
        "incremental",
        "--primary-key",
        KEY,
        "--update-key",
        "updated_at",
    ]
    return measured(cmd, env, work / "sling.log")


def run_dlt(server: etl.MariaDB, work: Path, backend: str) -> dict[str, float]:
    conn = server.connect()
    for db in (DLT_DATASET, f"{DLT_DATASET}_staging"):
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {db}")
        # As the bench's own target database: utf8mb4 (the server's default, latin1, rejects the odd values).
        conn.cursor().execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.commit()
    conn.close()
    shutil.rmtree(work / "dlt-pipelines", ignore_errors=True)
    script = work / "dlt_pipeline.py"
    script.write_text(DLT_SCRIPT.format(view=VIEW, key=KEY), encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work / "dlt-home"),
        "DLT_DATA_DIR": str(work / "dlt-home"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }
    src = tcp_url(server, "mysql+pymysql", etl.SOURCE_DB)  # PyMySQL's default charset is utf8mb4
    tgt = tcp_url(server, "mysql+pymysql", etl.TARGET_DB)
    cmd = [str(VENV / "bin" / "python"), str(script), src, tgt, backend, DLT_DATASET, str(work / "dlt-pipelines")]
    return measured(cmd, env, work / f"dlt-{backend}.log")


def pick_dlt_backend(server: etl.MariaDB, work: Path) -> tuple[str, list[str]]:
    """The first of DLT_BACKENDS whose run succeeds (a short trial on the real data); the failures seen."""
    failures = []
    for backend in DLT_BACKENDS:
        try:
            run_dlt(server, work, backend)
            return backend, failures
        except RuntimeError as exc:
            failures.append(f"{backend}: {str(exc).strip().splitlines()[-1][:200]}")
    raise SystemExit("dlt: no backend worked:\n  " + "\n  ".join(failures))


# -- the run ---------------------------------------------------------------------------------------
def run_round(
    tools: dict[str, Any], order: list[str], server: etl.MariaDB, expected: tuple[int, int], targets: dict[str, str]
) -> dict[str, dict[str, Any]]:
    results = {}
    for name in order:
        figures = tools[name]()
        figures["check"] = verify(server, targets[name], expected)
        exact = (
            "exact" if figures["check"]["exact"] else f"DIFFERS in {', '.join(figures['check']['columns']) or 'rows'}"
        )
        print(
            f"  {name:<22} {figures['wall_s']:8.2f} s  CPU {figures['cpu_s']:7.2f} s  "
            f"peak RSS {figures['peak_rss_mb']:7.1f} MB  target {figures['check']['rows']:,} rows, {exact}",
            flush=True,
        )
        results[name] = figures
    return results


def report(rounds: list[dict[str, dict[str, Any]]], rows: int, expected_rows: int, versions: dict[str, str]) -> None:
    names = list(rounds[0])
    base_name = "ours" if "ours" in names else names[0]
    base = min(r[base_name]["wall_s"] for r in rounds)
    print(
        f"\n--- {rows:,} source rows -> {expected_rows:,} target rows; best of {len(rounds)} rounds (order alternating) ---"
    )
    print(
        f"{'tool':<22} {'wall s':>8} {'rows/s':>9} {'CPU s':>8} {'peak RSS MB':>11} {'wall / ' + base_name:>11} {'target':>8}"
    )
    for name in names:
        best = min((r[name] for r in rounds), key=lambda f: f["wall_s"])
        cpu = min(r[name]["cpu_s"] for r in rounds)
        rss = max(r[name]["peak_rss_mb"] for r in rounds)
        exact = all(r[name]["check"]["exact"] for r in rounds)
        print(
            f"{name:<22} {best['wall_s']:>8.2f} {rows / best['wall_s']:>9,.0f} {cpu:>8.2f} {rss:>11.1f} "
            f"{best['wall_s'] / base:>10.2f}x {'exact' if exact else 'DIFFERS':>8}"
        )
    print(
        "(wall: the tool's processes from start to exit; rows/s: source rows over wall; CPU and peak RSS: the tool's "
        "own processes (ours: the sum and the largest of its five etlctl stage processes), not the server's)"
    )
    print(
        f"(peers: dlt {versions['dlt']}, connectorx {versions['connectorx']}, pyarrow {versions['pyarrow']}, "
        f"Sling {versions['sling']}; load average {os.getloadavg()[0]:.2f}: the figures are side by side, "
        "the absolute times depend on the machine's other work)"
    )
    for name in names:
        columns = rounds[-1][name]["check"]["columns"]
        duplicates = rounds[-1][name]["check"]["duplicates"]
        if duplicates:
            print(f"\n{name} keeps {duplicates:,} rows with a duplicate key (older copies of a key, not merged)")
        if columns:
            print(f"\n{name} changes these values (expected -> got, up to 6 distinct per column):")
            for column, pairs in columns.items():
                for want, got in pairs:
                    print(f"  {column}: {want!r} -> {got!r}")
        else:
            print(f"{name}: every value exact")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=200_000, help="source rows (default 200,000)")
    parser.add_argument("--dup-every", type=int, default=20, help="every Nth row repeats a key (default 20: 5%%)")
    parser.add_argument("--buffer-pool-mb", type=int, default=2048, help="InnoDB buffer pool (default 2048)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the order alternating (default 2)")
    parser.add_argument("--tools", default="ours,sling,dlt", help="comma list of ours, sling, dlt")
    parser.add_argument("--dlt-backend", choices=DLT_BACKENDS, help="skip the trial and use this dlt backend")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    versions = ensure_venv()
    work = Path(tempfile.mkdtemp(prefix="bench-peers-")).resolve()
    (work / "mariadb").mkdir()
    (work / "scratch").mkdir()
    print(
        f"peers bench, {args.rows:,} rows, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, work dir {work}",
        flush=True,
    )
    server = etl.start_private_mariadb(work, args.buffer_pool_mb)
    try:
        etl.generate_source(server, args.rows, args.dup_every)
        odd = add_odd_rows(server, args.rows)
        print(f"{args.rows:,} generated rows and {odd} rows of the tests' odd values", flush=True)
        prepare_server(server)
        expected = materialize_expected(server)
        entities, sql = etl.write_entity(work / "include")
        env = etl.stage_env(server, work, entities, sql)
        etl.run_stage("cleanup", env, work, "peers_warmup")  # fills the bytecode cache, not measured
        wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
        backend, failures = args.dlt_backend, []
        if "dlt" in wanted and backend is None:
            backend, failures = pick_dlt_backend(server, work)
            print(f"dlt backend: {backend}" + (f" (failed: {'; '.join(failures)})" if failures else ""), flush=True)
        all_tools = {
            "ours": lambda n: run_ours(server, env, work, n),
            "sling": lambda n: run_sling(server, work),
            f"dlt ({backend})": lambda n: run_dlt(server, work, backend or DLT_BACKENDS[0]),
        }
        targets = {
            "ours": f"{etl.TARGET_DB}.{etl.TARGET_TABLE}",
            "sling": f"{etl.TARGET_DB}.{SLING_TABLE}",
            f"dlt ({backend})": f"{DLT_DATASET}.{VIEW}",
        }
        names = [n for n in all_tools if n.split()[0] in wanted]
        rounds = []
        for number in range(args.rounds):
            order = names if number % 2 == 0 else names[::-1]
            print(f"round {number + 1}: {', '.join(order)}", flush=True)
            tools = {n: (lambda f=all_tools[n], k=number: f(k)) for n in order}
            rounds.append(run_round(tools, order, server, expected, targets))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(rounds, args.rows, expected[0], versions)
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "dlt_failures": failures}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
