"""Stage throughput and peak memory on MariaDB: ``etlctl run-stage`` per stage, against the server alone.

What it does, in one run:

1. starts a private MariaDB (``tests/servers.py``) and fills a source table with ``--rows`` rows of a
   company-like entity in one ``INSERT ... SELECT`` from MariaDB's sequence engine (seconds for 1M rows):
   varchar business keys with ``--dup-rate`` duplicate keys (newer and older copies), multi-byte names
   (German, Japanese, Greek, Cyrillic, Portuguese), emoji, quotes, commas, tabs, newlines, backslashes,
   NULLs, empty strings and the string ``'NULL'``, decimals, dates and datetimes with microseconds;
2. writes a temporary entity YAML + extract SQL (``ETL_ENTITIES_DIR`` / ``ETL_SQL_DIR``) whose source
   and target connections (``AIRFLOW_CONN_*``) point at that server, a local object store, and a
   private SQLite run store / lease (``ETL_STATE_DB``), so nothing lands in ``~/.local/share``;
3. runs cleanup -> extract -> load_staging -> dedupe -> load_target, each as its own ``etlctl run-stage``
   process (one unmeasured cleanup first fills the bytecode cache), recording the wall time and the
   process's own peak RSS (``getrusage(RUSAGE_SELF)`` at exit, reported by a tiny wrapper around
   ``entity_etl.cli.main``);
4. checks the target against the source (row count and a checksum of every value, after dedupe and
   sanitizers), so the figures are for a correct result;
5. times the server doing the same data movement alone as the reference: ``SELECT ... INTO OUTFILE``
   for the extract and ``LOAD DATA INFILE`` into a copy of the staging table for load_staging.

Run: ``make bench-throughput ROWS=1000000`` or
``uv run --frozen --all-extras python bench/stage_throughput.py --rows 1000000``.
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
sys.path.insert(0, str(ROOT / "tests"))

from servers import MariaDB, start_mariadb  # noqa: E402

RSS_GOAL_MB = 300
ENTITY = "bench_company"
SOURCE_DB = "bench_src"
TARGET_DB = "bench_tgt"
SOURCE_TABLE = "company_src"
STAGING_TABLE = "stg_bench_company"
TARGET_TABLE = "bench_company"
REF_STAGING_TABLE = "bench_ref_staging"
STAGES = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
INTERVAL_START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
INTERVAL_END = INTERVAL_START + dt.timedelta(days=1)

# (source column, SQL type in the source, entity type, target name, sanitizers)
COLUMNS: list[tuple[str, str, str, str | None, list[str]]] = [
    ("company_ref", "VARCHAR(20) NOT NULL", "string(20)", "company_id", []),
    ("company_name", "VARCHAR(200)", "string(200)", None, ["trim"]),
    ("legal_form", "VARCHAR(40)", "string(40)", None, ["trim", "null_if_empty"]),
    ("industry", "VARCHAR(120)", "string(120)", None, []),
    ("city", "VARCHAR(80)", "string(80)", None, []),
    ("share_capital", "DECIMAL(18,2)", "decimal(18,2)", None, []),
    ("founded", "DATE", "date", "founded_on", []),
    ("updated_at", "DATETIME(6) NOT NULL", "datetime", None, []),
]
NAMES = [
    "Müller & Söhne GmbH",
    "株式会社サンプル商事",
    "Ελληνικά Τρόφιμα Α.Ε.",
    'ООО "Ромашка"',
    "O'Brien, Walsh & Partners",
    "Tab\there Ltd",
    "Line\nbreak\r\nCorp",
    "Back\\slash \\N AG",
    "Rocket 🚀 Startup 👩‍💻",
    "  Padded Name  ",
    '"Quoted", Name, Inc.',
    "São João Comércio Ltda",
]
LEGAL_FORMS = ["GmbH", "AG", "", None, "  KG ", "NULL"]
INDUSTRIES = [
    "Maschinenbau",
    "Einzelhandel",
    "Software, IT & Daten",
    'Lebensmittel "Bio"',
    "Groß- und Außenhandel",
    "Transport\tLogistik",
    "Bau\\Immobilien",
    "Gesundheit 🏥",
]
CITIES = ["München", "Köln", "Düsseldorf", "Frankfurt am Main", "Zürich", "São Paulo"]

# Runs one etlctl command and reports the process's own peak RSS and CPU time at exit.
WRAPPER = """\
import json, resource, sys, time
out = sys.argv[1]
sys.argv = ["etlctl", *sys.argv[2:]]
rc = 1
try:
    from entity_etl.cli import main
    rc = main()
finally:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "w") as f:
        json.dump({"rc": rc, "maxrss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, f)
sys.exit(rc)
"""


def literal(conn: Any, value: str | None) -> str:
    return "NULL" if value is None else conn.literal(value).decode("utf-8")


def pick(conn: Any, expr: str, values: list[str | None]) -> str:
    """``ELT(1 + expr % len, ...)``: a value chosen by row number, deterministically."""
    return f"ELT(1 + ({expr}) % {len(values)}, {', '.join(literal(conn, v) for v in values)})"


def generate_source(server: MariaDB, rows: int, dup_every: int) -> float:
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(f"CREATE DATABASE {SOURCE_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    cur.execute(f"CREATE DATABASE {TARGET_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    cols = ", ".join(f"{name} {sql_type}" for name, sql_type, *_ in COLUMNS)
    cur.execute(f"CREATE TABLE {SOURCE_DB}.{SOURCE_TABLE} (id BIGINT NOT NULL PRIMARY KEY, {cols}) ENGINE=InnoDB")
    # Every dup_every-th row repeats the key of the row 7 before it, with a different timestamp (newer,
    # or older where the seconds wrap around midnight): ~1/dup_every duplicate keys.
    key = f"IF(seq % {dup_every} = 0 AND seq > 7, seq - 7, seq)"
    select = f"""
        SELECT seq,
               CONCAT('DE-', LPAD({key}, 10, '0')),
               IF(seq % 97 = 0, NULL, CONCAT({pick(conn, "seq", NAMES)}, ' #', seq)),
               {pick(conn, "seq DIV 3", LEGAL_FORMS)},
               {pick(conn, "seq DIV 5", INDUSTRIES)},
               {pick(conn, "seq DIV 7", CITIES)},
               IF(seq % 50 = 0, NULL, ((seq * 7919) % 100000000) / 100 - 1000),
               DATE '1950-01-01' + INTERVAL ((seq * 37) % 27000) DAY,
               TIMESTAMP '2026-11-01 00:00:00' + INTERVAL (seq % 86400) SECOND
                   + INTERVAL ((seq * 7) % 1000000) MICROSECOND
        FROM {SOURCE_DB}.seq_1_to_{rows}
    """
    t0 = time.perf_counter()
    cur.execute(f"INSERT INTO {SOURCE_DB}.{SOURCE_TABLE} {select}")
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def write_entity(include: Path) -> tuple[Path, Path]:
    entities, sql = include / "entities", include / "sql"
    (sql / ENTITY).mkdir(parents=True)
    entities.mkdir()
    lines = [
        f"entity: {ENTITY}",
        "description: Bench - company-like rows with odd characters, daily delta",
        'schedule: "@daily"',
        f"start_date: {INTERVAL_START.date().isoformat()}",
        "source:",
        "  conn_id: bench_source",
        f"  extract_sql: {ENTITY}/extract.sql",
        "staging:",
        f"  table: {STAGING_TABLE}",
        "target:",
        "  conn_id: bench_target",
        f"  table: {TARGET_TABLE}",
        "columns:",
    ]
    for name, _sql_type, etype, target, sanitize in COLUMNS:
        extra = (f", target: {target}" if target else "") + (f", sanitize: [{', '.join(sanitize)}]" if sanitize else "")
        lines.append(f'  - {{name: {name}, type: "{etype}"{extra}}}')
    lines += ["dedupe:", "  key: [company_ref]", "  keep: newest", "  order_by: updated_at", ""]
    (entities / f"{ENTITY}.yaml").write_text("\n".join(lines), encoding="utf-8")
    names = ", ".join(c[0] for c in COLUMNS)
    (sql / ENTITY / "extract.sql").write_text(
        f"SELECT {names}\nFROM {SOURCE_TABLE}\n"
        "WHERE updated_at >= :data_interval_start\n  AND updated_at < :data_interval_end\n",
        encoding="utf-8",
    )
    return entities, sql


def run_stage(stage: str, env: dict[str, str], work: Path, run_id: str) -> dict[str, Any]:
    report = work / f"rusage-{stage}.json"
    report.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-c",
        WRAPPER,
        str(report),
        "run-stage",
        "--entity",
        ENTITY,
        "--stage",
        stage,
        "--run-id",
        run_id,
        "--interval-start",
        INTERVAL_START.isoformat(),
        "--interval-end",
        INTERVAL_END.isoformat(),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=7200)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"stage {stage} failed (exit {proc.returncode})")
    usage = json.loads(report.read_text(encoding="utf-8"))
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"stage": stage, "wall_s": wall, "peak_rss_mb": usage["maxrss_kb"] / 1024, "cpu_s": usage["cpu_s"], **stats}


def checksum_sql(names: list[str], table: str, where: str = "") -> str:
    """Row count and an order-independent checksum of every value (NULL distinct from any string)."""
    fields = ", ".join(f"IFNULL(CAST({n} AS CHAR), '<NULL>')" for n in names)
    return f"SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|', {fields}))) FROM {table} {where}"


def verify(server: MariaDB) -> tuple[int, int]:
    """Target == newest row per key of the source, with the sanitizers applied: else exit."""
    exprs = []
    for name, _sql_type, _etype, _target, sanitize in COLUMNS:
        expr = name
        for step in sanitize:
            expr = {"trim": f"TRIM({expr})", "null_if_empty": f"NULLIF({expr}, '')"}[step]
        exprs.append(f"{expr} AS {name}")
    newest = (
        f"(SELECT {', '.join(exprs)} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY company_ref "
        f"ORDER BY updated_at DESC) AS rn FROM {SOURCE_DB}.{SOURCE_TABLE}) ranked WHERE rn = 1) expected"
    )
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(checksum_sql([c[0] for c in COLUMNS], newest))
    expected = cur.fetchone()
    cur.execute(checksum_sql([c[3] or c[0] for c in COLUMNS], f"{TARGET_DB}.{TARGET_TABLE}"))
    actual = cur.fetchone()
    conn.close()
    if tuple(expected) != tuple(actual):
        raise SystemExit(f"target differs from the source: expected (rows, checksum) {expected}, got {actual}")
    return int(actual[0]), int(actual[1])


def server_reference(server: MariaDB, work: Path) -> dict[str, float]:
    """The server alone: SELECT ... INTO OUTFILE, then LOAD DATA INFILE into a copy of the staging table."""
    outfile = work / "reference-extract.csv"
    outfile.unlink(missing_ok=True)
    names = ", ".join(c[0] for c in COLUMNS)
    options = "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
    conn = server.connect()
    cur = conn.cursor()
    t0 = time.perf_counter()
    cur.execute(
        f"SELECT {names} FROM {SOURCE_DB}.{SOURCE_TABLE} WHERE updated_at >= %s AND updated_at < %s "
        f"INTO OUTFILE '{outfile}' CHARACTER SET utf8mb4 {options}",
        (INTERVAL_START.strftime("%Y-%m-%d %H:%M:%S"), INTERVAL_END.strftime("%Y-%m-%d %H:%M:%S")),
    )
    extract_s = time.perf_counter() - t0
    cur.execute(f"DROP TABLE IF EXISTS {TARGET_DB}.{REF_STAGING_TABLE}")
    cur.execute(f"CREATE TABLE {TARGET_DB}.{REF_STAGING_TABLE} LIKE {TARGET_DB}.{STAGING_TABLE}")
    t0 = time.perf_counter()
    cur.execute(
        f"LOAD DATA INFILE '{outfile}' INTO TABLE {TARGET_DB}.{REF_STAGING_TABLE} CHARACTER SET utf8mb4 "
        f"{options} ({names})"
    )
    conn.commit()
    load_s = time.perf_counter() - t0
    loaded = cur.rowcount
    cur.execute(f"DROP TABLE {TARGET_DB}.{REF_STAGING_TABLE}")
    conn.close()
    size = outfile.stat().st_size
    outfile.unlink()
    return {"extract_s": extract_s, "load_s": load_s, "rows": loaded, "bytes": size}


def start_private_mariadb(work: Path) -> MariaDB:
    """``start_mariadb`` with the server's temporary files (``@@tmpdir``) in the work dir, not ``/tmp``.

    The dedupe's window function spills to on-disk temporary tables; in a shared ``/tmp`` another
    process's clean-up once deleted one mid-statement ("Error on delete of '/tmp/#sql-temptable-...MAI'").
    mariadbd takes its default tmpdir from ``TMPDIR``.
    """
    server_tmp = work / "mariadb-tmp"
    server_tmp.mkdir(exist_ok=True)
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(server_tmp)
    try:
        return start_mariadb(work / "mariadb")
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="source rows (default 1,000,000)")
    parser.add_argument("--dup-every", type=int, default=20, help="every Nth row repeats a key (default 20: 5%%)")
    parser.add_argument("--work-dir", type=Path, help="keep the server and files here (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.rows < 10:
        parser.error("--rows must be at least 10")

    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="bench-throughput-"))).resolve()
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "mariadb").mkdir()
    (work / "scratch").mkdir()
    print(
        f"Stage throughput, {args.rows:,} rows, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
        f"at start; work dir {work}",
        flush=True,
    )
    server = start_private_mariadb(work)
    try:
        generate_s = generate_source(server, args.rows, args.dup_every)
        print(f"source table generated in {generate_s:.1f} s ({args.rows / generate_s:,.0f} rows/s)", flush=True)
        entities, sql = write_entity(work / "include")
        # Nothing from the caller's ETL_* settings; the run store and lease (SQLite) live in the work dir.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("ETL_") and k not in ("AWS_BATCH_JOB_ID", "PYTHONDONTWRITEBYTECODE")
        }
        env.update(
            {
                "ETL_STATE_STORE": "sqlite",
                "ETL_STATE_DB": str(work / "state.db"),
                "ETL_METRICS": "log",
                "ETL_ENTITIES_DIR": str(entities),
                "ETL_SQL_DIR": str(sql),
                "ETL_OBJECT_STORE_URL": str(work / "objects"),
                "ETL_SCRATCH_DIR": str(work / "scratch"),
                "AIRFLOW_CONN_BENCH_SOURCE": server.conn_json(SOURCE_DB),
                "AIRFLOW_CONN_BENCH_TARGET": server.conn_json(TARGET_DB),
                # A deployed image has .pyc files; the unmeasured first cleanup fills this cache.
                "PYTHONPYCACHEPREFIX": str(work / "pycache"),
            }
        )
        run_id = f"bench__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        run_stage("cleanup", env, work, run_id)  # warm-up, not measured
        results = []
        t0 = time.perf_counter()
        for stage in STAGES:
            result = run_stage(stage, env, work, run_id)
            results.append(result)
            print(
                f"  {stage:<13} {result['wall_s']:7.2f} s  peak RSS {result['peak_rss_mb']:6.1f} MB  "
                f"rows in {result['rows_in']:,} out {result['rows_out']:,}",
                flush=True,
            )
        end_to_end = time.perf_counter() - t0
        rows, checksum = verify(server)
        print(f"target verified: {rows:,} rows, values identical to the newest source row per key (crc {checksum})")
        reference = server_reference(server, work)
        if reference["rows"] != args.rows:
            raise SystemExit(f"reference LOAD DATA loaded {reference['rows']} rows, expected {args.rows}")
    finally:
        server.stop()
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    by_stage = {r["stage"]: r for r in results}
    print(
        f"\n{'stage':<13} {'rows':>10} {'wall s':>8} {'in-stage s':>10} {'rows/s':>10} {'CPU s':>7} {'peak RSS MB':>12}"
    )
    for r in results:
        rows_done = max(r["rows_in"], r["rows_out"])
        rate = f"{rows_done / r['wall_s']:,.0f}" if rows_done else "-"
        print(
            f"{r['stage']:<13} {rows_done:>10,} {r['wall_s']:>8.2f} {r['duration_s']:>10.2f} {rate:>10} "
            f"{r['cpu_s']:>7.2f} {r['peak_rss_mb']:>12.1f}"
        )
    print(f"{'end to end':<13} {args.rows:>10,} {end_to_end:>8.2f} {'':>10} {args.rows / end_to_end:>10,.0f}")
    print(
        "(wall: the whole etlctl process; in-stage: the stage's own duration_s; rows/s on wall; "
        "CPU: the etlctl process only, not the server)"
    )

    print("\nServer-only reference for the same data movement (the same MariaDB, same rows):")
    print(f"{'step':<45} {'server s':>9} {'ours s':>8} {'ours/server':>12}")
    pairs = [
        ("extract: SELECT ... INTO OUTFILE", reference["extract_s"], by_stage["extract"]["wall_s"]),
        ("load_staging: LOAD DATA INFILE (server file)", reference["load_s"], by_stage["load_staging"]["wall_s"]),
    ]
    for label, server_s, ours_s in pairs:
        print(f"{label:<45} {server_s:>9.2f} {ours_s:>8.2f} {ours_s / server_s:>11.1f}x")
    print(
        f"(reference CSV {reference['bytes'] / 1e6:,.0f} MB uncompressed; "
        f"our extract {by_stage['extract']['bytes'] / 1e6:,.0f} MB gzip)"
    )
    print(f"(load average {os.getloadavg()[0]:.2f} at the end: other work on the machine skews the times)")
    peak = max(r["peak_rss_mb"] for r in results)
    print(
        f"\nGoal: peak RSS under {RSS_GOAL_MB} MB in every stage -> {'met' if peak < RSS_GOAL_MB else 'MISSED'} "
        f"(highest {peak:.1f} MB, {max(results, key=lambda r: r['peak_rss_mb'])['stage']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
