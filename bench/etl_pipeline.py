"""ETL pipeline on MariaDB: every stage through ``etlctl run-stage``, against the server alone and a naive loop.

What it does, in one run, for each ``--rows`` size (a comma list runs several sizes, each on a fresh server):

1. starts a private MariaDB (``tests/support/servers.py``) and fills a source table with that many rows of a
   company-like entity in one ``INSERT ... SELECT`` from MariaDB's sequence engine (seconds for 1M rows):
   varchar business keys with ``--dup-every`` duplicate keys (newer and older copies), multi-byte names
   (German, Japanese, Greek, Cyrillic, Portuguese), emoji, quotes, commas, tabs, newlines, backslashes,
   NULLs, empty strings and the string ``'NULL'``, decimals, dates and datetimes with microseconds;
2. writes a temporary entity YAML + extract SQL (``ETL_ENTITIES_DIR`` / ``ETL_SQL_DIR``) whose source
   and target connections (``AIRFLOW_CONN_*``) point at that server, a local object store, and a
   private SQLite run store / lease (``ETL_STATE_DB``), so nothing lands in ``~/.local/share``;
3. runs cleanup -> extract -> load_staging -> dedupe -> load_target, each as its own ``etlctl run-stage``
   process (one unmeasured cleanup first fills the bytecode cache), recording the wall time, the
   process's CPU time and its own peak RSS (``getrusage(RUSAGE_SELF)`` at exit, reported by a tiny
   wrapper around ``entity_etl.cli.main``);
4. THE LIMIT: right before each stage, the server alone does the same data movement on the same rows:
   ``SELECT ... INTO OUTFILE`` (extract), ``LOAD DATA INFILE`` of that file into a copy of the staging
   table (load_staging), the runtime's own dedupe SQL (``stages.dedupe_sql``) on that copy (dedupe), and
   one ``INSERT ... SELECT`` with the sanitizers into a copy of the keyed target (load_target). The limit
   uses the runtime's own ``MySQLDatabase`` connection, so it gets the same session settings;
5. THE NAIVE PATH: a plain Python loop in its own process (mysqlclient's default cursor and conversions,
   ``fetchall``, newest row per key and the sanitizers in Python, ``executemany`` INSERT into a copy of
   the keyed target) on the first ``--naive-rows`` source rows, scaled linearly to the full size;
6. checks our target, the limit's target and the naive target against the source (row count and a
   checksum of every value, after dedupe and sanitizers), so every figure is for a correct result;
7. prints rows/s, wall, CPU and peak RSS per stage, ours/limit per stage and end to end, naive/ours, the
   goals, and with several sizes the peak-RSS growth per stage from the smallest to the largest size.

``--profile`` adds an unmeasured second pass of every stage (a new run id) under cProfile and prints the
top functions of each stage process. ``--variant FILE`` adds A/B passes: each round runs every stage
once as it is (A) and once with FILE executed first in the stage process (B: a monkeypatched prototype
of a runtime change), with the target emptied before each pass, and prints the best wall per stage.

Run: ``make bench-etl ROWS=2000000`` or
``uv run --frozen --all-extras python bench/etl_pipeline.py --rows 1000000,4000000``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "plugins"))

from support.servers import MariaDB, start_mariadb  # noqa: E402

RSS_GOAL_MB = 300
RSS_GROWTH_GOAL = 0.10
LIMIT_GOAL = 1.5
NAIVE_GOAL = 10.0
ENTITY = "bench_company"
SOURCE_DB = "bench_src"
TARGET_DB = "bench_tgt"
SOURCE_TABLE = "company_src"
STAGING_TABLE = "stg_bench_company"
TARGET_TABLE = "bench_company"
REF_STAGING_TABLE = "bench_ref_staging"
REF_TARGET_TABLE = "bench_ref_target"
NAIVE_TARGET_TABLE = "bench_naive_target"
STAGES = ["cleanup", "extract", "load_staging", "dedupe", "load_target"]
INTERVAL_START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
INTERVAL_END = INTERVAL_START + dt.timedelta(days=1)
# The server's own CSV dialect for the limit's OUTFILE -> LOAD DATA INFILE round trip.
SERVER_CSV = "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"

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
SOURCE_NAMES = [c[0] for c in COLUMNS]
TARGET_NAMES = [c[3] or c[0] for c in COLUMNS]
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

# Runs one etlctl command and reports the process's own peak RSS and CPU time at exit; under
# BENCH_PROFILE_OUT it runs the command under cProfile and writes the stats there.
WRAPPER = """\
import json, os, resource, sys
out = sys.argv[1]
sys.argv = ["etlctl", *sys.argv[2:]]
rc = 1
try:
    from entity_etl.cli import main
    variant = os.environ.get("BENCH_VARIANT")
    if variant:  # a prototype of a runtime change, applied in this process only (see --variant)
        exec(compile(open(variant).read(), variant, "exec"), {"__name__": "bench_variant"})
    profile_out = os.environ.get("BENCH_PROFILE_OUT")
    if profile_out:
        import cProfile
        profiler = cProfile.Profile()
        rc = profiler.runcall(main)
        profiler.dump_stats(profile_out)
    else:
        rc = main()
finally:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "w") as f:
        json.dump({"rc": rc, "maxrss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, f)
sys.exit(rc)
"""


# -- the source data -------------------------------------------------------------------------------
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
    # The business key is indexed, as a source's would be (and as a keyset-chunked extract wants).
    cur.execute(
        f"CREATE TABLE {SOURCE_DB}.{SOURCE_TABLE} (id BIGINT NOT NULL PRIMARY KEY, {cols}, "
        "KEY company_ref_ix (company_ref)) ENGINE=InnoDB"
    )
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
    (sql / ENTITY / "extract.sql").write_text(
        f"SELECT {', '.join(SOURCE_NAMES)}\nFROM {SOURCE_TABLE}\n"
        "WHERE updated_at >= :data_interval_start\n  AND updated_at < :data_interval_end\n",
        encoding="utf-8",
    )
    return entities, sql


def interval_params() -> tuple[str, str]:
    return INTERVAL_START.strftime("%Y-%m-%d %H:%M:%S"), INTERVAL_END.strftime("%Y-%m-%d %H:%M:%S")


# -- ours: one etlctl process per stage ------------------------------------------------------------
def run_stage(
    stage: str,
    env: dict[str, str],
    work: Path,
    run_id: str,
    profile_out: Path | None = None,
    variant: Path | None = None,
) -> dict[str, Any]:
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
    stage_env = dict(env)
    if profile_out:
        stage_env["BENCH_PROFILE_OUT"] = str(profile_out)
    if variant:
        stage_env["BENCH_VARIANT"] = str(variant)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=stage_env, capture_output=True, text=True, check=False, timeout=7200)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"stage {stage} failed (exit {proc.returncode})")
    usage = json.loads(report.read_text(encoding="utf-8"))
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"stage": stage, "wall_s": wall, "peak_rss_mb": usage["maxrss_kb"] / 1024, "cpu_s": usage["cpu_s"], **stats}


def stage_env(server: MariaDB, work: Path, entities: Path, sql: Path) -> dict[str, str]:
    # Nothing from the caller's ETL_* settings; the run store and lease (SQLite) live in the work dir.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ETL_", "BENCH_")) and k not in ("AWS_BATCH_JOB_ID", "PYTHONDONTWRITEBYTECODE")
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
    return env


# -- checks ----------------------------------------------------------------------------------------
def checksum_sql(names: list[str], table: str, where: str = "") -> str:
    """Row count and an order-independent checksum of every value (NULL distinct from any string)."""
    fields = ", ".join(f"IFNULL(CAST({n} AS CHAR), '<NULL>')" for n in names)
    return f"SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|', {fields}))) FROM {table} {where}"


def sanitized_exprs(quote: bool = False) -> list[str]:
    """The sanitizers as SQL over the source (staging) column names, as the runtime applies them."""
    exprs = []
    for name, _sql_type, _etype, _target, sanitize in COLUMNS:
        expr = f"`{name}`" if quote else name
        for step in sanitize:
            expr = {"trim": f"TRIM({expr})", "null_if_empty": f"NULLIF({expr}, '')"}[step]
        exprs.append(expr)
    return exprs


def expected_checksum(server: MariaDB, max_id: int | None = None) -> tuple[int, int]:
    """(rows, checksum) of the newest source row per key, with the sanitizers applied."""
    where = f"WHERE id <= {int(max_id)}" if max_id is not None else ""
    exprs = ", ".join(f"{e} AS {n}" for e, n in zip(sanitized_exprs(), SOURCE_NAMES, strict=True))
    newest = (
        f"(SELECT {exprs} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY company_ref "
        f"ORDER BY updated_at DESC) AS rn FROM {SOURCE_DB}.{SOURCE_TABLE} {where}) ranked WHERE rn = 1) expected"
    )
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(checksum_sql(SOURCE_NAMES, newest))
    rows, crc = cur.fetchone()
    conn.close()
    return int(rows), int(crc)


def check_target(server: MariaDB, table: str, expected: tuple[int, int], what: str) -> None:
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(checksum_sql(TARGET_NAMES, f"{TARGET_DB}.{table}"))
    rows, crc = cur.fetchone()
    conn.close()
    if (int(rows), int(crc)) != expected:
        raise SystemExit(f"{what}: {table} differs from the source: expected (rows, crc) {expected}, got {(rows, crc)}")


# -- THE LIMIT: the server alone -------------------------------------------------------------------
class Limit:
    """The same data movement by the server alone, one step per stage, on the runtime's own connection."""

    def __init__(self, server: MariaDB, work: Path, entities: Path, sql: Path) -> None:
        from entity_etl.config.loader import find_entity
        from entity_etl.runtime.connections import parse_connection
        from entity_etl.runtime.databases import open_database

        self.db = open_database(parse_connection("bench_target", server.conn_json(TARGET_DB)))
        self.db.connect()
        config = find_entity(ENTITY, entities, sql)
        self.config = config.model_copy(
            update={"staging": config.staging.model_copy(update={"table": REF_STAGING_TABLE})}
        )
        self.outfile = work / "limit-extract.csv"
        self.bytes = 0
        self.times: dict[str, float] = {}

    def _timed(self, stage: str, *statements: str) -> int:
        t0 = time.perf_counter()
        count = 0
        for sql in statements:
            count = self.db.execute(sql)
        self.db.commit()
        self.times[stage] = time.perf_counter() - t0
        return count

    def extract(self) -> None:
        self.outfile.unlink(missing_ok=True)
        start, end = interval_params()
        self._timed(
            "extract",
            f"SELECT {', '.join(SOURCE_NAMES)} FROM {SOURCE_DB}.{SOURCE_TABLE} "
            f"WHERE updated_at >= '{start}' AND updated_at < '{end}' "
            f"INTO OUTFILE '{self.outfile}' CHARACTER SET utf8mb4 {SERVER_CSV}",
        )
        self.bytes = self.outfile.stat().st_size

    def load_staging(self, rows: int) -> None:
        # The staging layout: the same table definition the runtime's cleanup made.
        self.db.execute(f"DROP TABLE IF EXISTS {REF_STAGING_TABLE}")
        self.db.execute(f"CREATE TABLE {REF_STAGING_TABLE} LIKE {STAGING_TABLE}")
        loaded = self._timed(
            "load_staging",
            f"LOAD DATA INFILE '{self.outfile}' INTO TABLE {REF_STAGING_TABLE} CHARACTER SET utf8mb4 "
            f"{SERVER_CSV} ({', '.join(SOURCE_NAMES)})",
        )
        self.outfile.unlink()
        if loaded != rows:
            raise SystemExit(f"limit: LOAD DATA INFILE loaded {loaded} rows, expected {rows}")

    def dedupe(self) -> None:
        from entity_etl.runtime.stages import dedupe_sql

        self._timed("dedupe", dedupe_sql(self.db, self.config))

    def load_target(self) -> None:
        # The keyed target layout, as the runtime's load_target creates it.
        config = self.config
        key = [config.column(k).target_name for k in config.dedupe.key]
        self.db.execute(f"DROP TABLE IF EXISTS {REF_TARGET_TABLE}")
        self.db.execute(
            self.db.create_table_sql(REF_TARGET_TABLE, [(c.target_name, c.type) for c in config.columns], key=key)
        )
        names = ", ".join(f"`{n}`" for n in TARGET_NAMES)
        self._timed(
            "load_target",
            f"INSERT INTO {REF_TARGET_TABLE} ({names}) SELECT {', '.join(sanitized_exprs(quote=True))} "
            f"FROM {REF_STAGING_TABLE}",
        )

    def drop(self) -> None:
        self.db.execute(f"DROP TABLE IF EXISTS {REF_STAGING_TABLE}")
        self.db.execute(f"DROP TABLE IF EXISTS {REF_TARGET_TABLE}")
        self.db.close()


# -- THE NAIVE PATH: fetchall / executemany --------------------------------------------------------
def naive_child(socket: str, max_id: int, out: Path) -> None:
    """Runs in its own process: source -> Python -> target with mysqlclient's defaults."""
    import resource

    import MySQLdb

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    src = MySQLdb.connect(unix_socket=socket, user="root", db=SOURCE_DB, charset="utf8mb4")
    cur = src.cursor()  # the default, buffered cursor with the default conversions
    cur.execute(
        f"SELECT {', '.join(SOURCE_NAMES)} FROM {SOURCE_TABLE} WHERE updated_at >= %s AND updated_at < %s AND id <= %s",
        (*interval_params(), max_id),
    )
    rows = cur.fetchall()
    src.close()
    times["fetch"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    newest: dict[str, tuple[Any, ...]] = {}
    for row in rows:  # newest per key; on a tie the later row, as the runtime's ORDER BY ..., _etl_row DESC
        kept = newest.get(row[0])
        if kept is None or row[-1] >= kept[-1]:
            newest[row[0]] = row
    steps = [c[4] for c in COLUMNS]
    out_rows = []
    for row in newest.values():
        values = list(row)
        for i, sanitize in enumerate(steps):
            for step in sanitize:
                value = values[i]
                if step == "trim" and value is not None:
                    values[i] = value.strip(" ")
                elif step == "null_if_empty" and value == "":
                    values[i] = None
        out_rows.append(values)
    times["python"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    tgt = MySQLdb.connect(unix_socket=socket, user="root", db=TARGET_DB, charset="utf8mb4")
    tcur = tgt.cursor()
    names = ", ".join(f"`{n}`" for n in TARGET_NAMES)
    marks = ", ".join(["%s"] * len(TARGET_NAMES))
    tcur.executemany(f"INSERT INTO {NAIVE_TARGET_TABLE} ({names}) VALUES ({marks})", out_rows)
    tgt.commit()
    tgt.close()
    times["insert"] = time.perf_counter() - t2
    times["total"] = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(
        json.dumps({"times": times, "rows": len(rows), "rows_out": len(out_rows), "peak_rss_mb": ru.ru_maxrss / 1024})
    )


def run_naive(server: MariaDB, work: Path, max_id: int) -> dict[str, Any]:
    conn = server.connect(TARGET_DB)
    cur = conn.cursor()
    cur.execute(f"DROP TABLE IF EXISTS {NAIVE_TARGET_TABLE}")
    cur.execute(f"CREATE TABLE {NAIVE_TARGET_TABLE} LIKE {TARGET_TABLE}")
    conn.close()
    out = work / "naive.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "_naive", server.socket, str(max_id), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=7200)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"naive path failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.read_text())
    check_target(server, NAIVE_TARGET_TABLE, expected_checksum(server, max_id), "naive path")
    conn = server.connect(TARGET_DB)
    conn.cursor().execute(f"DROP TABLE {NAIVE_TARGET_TABLE}")
    conn.close()
    return result


# -- A/B: the runtime as it is against a prototype of a change ------------------------------------
def run_variant(
    server: MariaDB, env: dict[str, str], work: Path, run_id: str, variant: Path, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """Rounds of two full passes (new run ids, the target emptied first): A as is, B with ``variant``.

    The order alternates by round, so neither side always runs on the warmer server.
    """
    passes: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for number in range(rounds):
        for side in ("A", "B") if number % 2 == 0 else ("B", "A"):
            conn = server.connect(TARGET_DB)
            conn.cursor().execute(f"DROP TABLE IF EXISTS {TARGET_TABLE}")
            conn.close()
            pass_id = f"{run_id}_{side}{number}"
            walls = {}
            for stage in STAGES:
                r = run_stage(stage, env, work, pass_id, variant=variant if side == "B" else None)
                walls[stage] = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": r["peak_rss_mb"]}
            check_target(server, TARGET_TABLE, expected_checksum(server), f"variant pass {side}")
            passes[side].append(walls)
            print(f"  A/B round {number + 1} pass {side}: {sum(w['wall_s'] for w in walls.values()):.2f} s", flush=True)
    return passes


def report_variant(passes: dict[str, list[dict[str, Any]]], variant: Path) -> None:
    print(f"\nA/B: the runtime as it is (A) against the prototype {variant} (B), best of {len(passes['A'])} round(s)")
    print(
        f"{'stage':<13} {'A wall s':>9} {'B wall s':>9} {'B/A':>6} {'A CPU s':>8} {'B CPU s':>8} {'A RSS':>6} {'B RSS':>6}"
    )
    total = {"A": 0.0, "B": 0.0}
    for stage in STAGES:
        best = {side: min(p[stage]["wall_s"] for p in passes[side]) for side in passes}
        cpu = {side: min(p[stage]["cpu_s"] for p in passes[side]) for side in passes}
        rss = {side: max(p[stage]["peak_rss_mb"] for p in passes[side]) for side in passes}
        total["A"] += best["A"]
        total["B"] += best["B"]
        print(
            f"{stage:<13} {best['A']:>9.2f} {best['B']:>9.2f} {best['B'] / best['A']:>6.2f} {cpu['A']:>8.2f} "
            f"{cpu['B']:>8.2f} {rss['A']:>6.1f} {rss['B']:>6.1f}"
        )
    print(f"{'end to end':<13} {total['A']:>9.2f} {total['B']:>9.2f} {total['B'] / total['A']:>6.2f}")


# -- profile ---------------------------------------------------------------------------------------
def print_profile(stage: str, path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    total = stats.total_tt
    print(f"\n-- cProfile, {stage}: {total:.2f} s of profiled CPU+wait; top {top} by own time --")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)
    print(f"{'own s':>8} {'share':>6} {'cum s':>8} {'calls':>10}  function")
    for (filename, line, func), (_cc, calls, own, cum, _callers) in rows[:top]:
        where = func if filename == "~" else f"{Path(filename).name}:{line}({func})"
        print(f"{own:>8.2f} {own / total:>6.0%} {cum:>8.2f} {calls:>10,}  {where}")


# -- one size --------------------------------------------------------------------------------------
def start_private_mariadb(work: Path, buffer_pool_mb: int) -> MariaDB:
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
        server = start_mariadb(work / "mariadb")
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
    set_buffer_pool(server, buffer_pool_mb)
    return server


def set_buffer_pool(server: MariaDB, megabytes: int) -> None:
    """Resize InnoDB's buffer pool (the test server starts with 256 MB) and wait for the resize to finish.

    With 256 MB the tables of a 2M-row run do not fit, and whichever step ran last decides what the next
    one finds in memory, which skews the side-by-side figures; a production RDS instance gives InnoDB
    about three quarters of its memory.
    """
    conn = server.connect()
    cur = conn.cursor()
    cur.execute(f"SET GLOBAL innodb_buffer_pool_size = {int(megabytes) << 20}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_resize_status'")
        status = cur.fetchone()
        if not status or not status[1] or "ompleted" in status[1]:
            break
        time.sleep(0.2)
    conn.close()


def run_size(rows: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True)
    (work / "mariadb").mkdir()
    (work / "scratch").mkdir()
    print(
        f"\n=== {rows:,} rows (load average {os.getloadavg()[0]:.2f}; buffer pool {args.buffer_pool_mb} MB; "
        f"work dir {work}) ===",
        flush=True,
    )
    server = start_private_mariadb(work, args.buffer_pool_mb)
    try:
        generate_s = generate_source(server, rows, args.dup_every)
        print(f"source table generated in {generate_s:.1f} s ({rows / generate_s:,.0f} rows/s)", flush=True)
        entities, sql = write_entity(work / "include")
        env = stage_env(server, work, entities, sql)
        run_id = f"bench__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
        run_stage("cleanup", env, work, run_id)  # warm-up, not measured
        limit = Limit(server, work, entities, sql)
        # Each limit step runs right before the stage it stands for: the same data, the same cache
        # state and the same load from the rest of the machine, as near as one can get.
        limit_steps = {
            "extract": limit.extract,
            "load_staging": lambda: limit.load_staging(rows),
            "dedupe": limit.dedupe,
            "load_target": limit.load_target,
        }
        results = []
        for stage in STAGES:
            if stage in limit_steps:
                limit_steps[stage]()
            result = run_stage(stage, env, work, run_id)
            results.append(result)
            lim = limit.times.get(stage)
            print(
                f"  {stage:<13} {result['wall_s']:7.2f} s  peak RSS {result['peak_rss_mb']:6.1f} MB  "
                f"rows in {result['rows_in']:,} out {result['rows_out']:,}"
                + (f"   (limit {lim:.2f} s)" if lim is not None else ""),
                flush=True,
            )
        expected = expected_checksum(server)
        check_target(server, TARGET_TABLE, expected, "ours")
        check_target(server, REF_TARGET_TABLE, expected, "limit")
        print(f"targets verified: {expected[0]:,} rows, ours and the limit's identical to the newest source rows")
        limit.drop()
        naive_rows = min(rows, args.naive_rows)
        naive = run_naive(server, work, naive_rows)
        print(f"naive path on {naive_rows:,} rows: {naive['times']['total']:.2f} s, target verified", flush=True)
        ab = run_variant(server, env, work, run_id, args.variant, args.variant_rounds) if args.variant else None
        profiles: dict[str, Path] = {}
        if args.profile:
            profile_run = run_id + "_profile"
            for stage in STAGES:
                profiles[stage] = work / f"profile-{stage}.pstats"
                run_stage(stage, env, work, profile_run, profile_out=profiles[stage])
        load_end = os.getloadavg()[0]
    finally:
        server.stop()
    for stage, path in profiles.items():
        if stage != "cleanup":
            print_profile(stage, path, args.profile_top)
    if ab:
        report_variant(ab, args.variant)
    if args.work_dir is None:  # this size's server and files: gigabytes at 10M rows
        shutil.rmtree(work, ignore_errors=True)
    return {
        "rows": rows,
        "generate_s": generate_s,
        "stages": results,
        "limit": {**limit.times, "csv_bytes": limit.bytes},
        "naive": {**naive, "subset_rows": naive_rows},
        "load_average_end": load_end,
        "variant": ab,
    }


# -- report ----------------------------------------------------------------------------------------
def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if rows and seconds else "-"


def report_size(res: dict[str, Any]) -> dict[str, float]:
    rows = res["rows"]
    limit = res["limit"]
    print(f"\n--- {rows:,} rows: ours (one etlctl process per stage) against THE LIMIT (the server alone) ---")
    print(
        f"{'stage':<13} {'rows':>10} {'wall s':>8} {'in-stage s':>10} {'rows/s':>10} {'CPU s':>7} "
        f"{'peak RSS MB':>11} | {'limit s':>8} {'limit rows/s':>12} {'ours/limit':>10}"
    )
    ours_total = 0.0
    for r in res["stages"]:
        done = max(r["rows_in"], r["rows_out"])
        ours_total += r["wall_s"]
        lim = limit.get(r["stage"])
        tail = f"{lim:>8.2f} {rate(done, lim):>12} {r['wall_s'] / lim:>9.2f}x" if lim else f"{'':>8} {'':>12} {'':>10}"
        print(
            f"{r['stage']:<13} {done:>10,} {r['wall_s']:>8.2f} {r['duration_s']:>10.2f} {rate(done, r['wall_s']):>10} "
            f"{r['cpu_s']:>7.2f} {r['peak_rss_mb']:>11.1f} | {tail}"
        )
    limit_total = sum(limit[s] for s in ("extract", "load_staging", "dedupe", "load_target"))
    naive = res["naive"]
    naive_scaled = naive["times"]["total"] * rows / naive["subset_rows"]
    print(
        f"{'end to end':<13} {rows:>10,} {ours_total:>8.2f} {'':>10} {rate(rows, ours_total):>10} {'':>7} {'':>11} | "
        f"{limit_total:>8.2f} {rate(rows, limit_total):>12} {ours_total / limit_total:>9.2f}x"
    )
    print(
        "(wall: the whole etlctl process, interpreter start-up included; in-stage: the stage's own duration_s; "
        "rows/s on wall; CPU: the etlctl process only, not the server. Limit: SELECT ... INTO OUTFILE, "
        "LOAD DATA INFILE into a copy of staging, the runtime's dedupe_sql on it, INSERT ... SELECT with the "
        "sanitizers into a copy of the keyed target.)"
    )
    print(
        f"(limit's server CSV {limit['csv_bytes'] / 1e6:,.0f} MB; our gzip extract {res['stages'][1]['bytes'] / 1e6:,.0f} MB)"
    )
    t = naive["times"]
    scaled = "" if naive["subset_rows"] == rows else f", scaled linearly to {rows:,} rows: {naive_scaled:.1f} s"
    print(
        f"\nTHE NAIVE PATH (mysqlclient default cursor + conversions, fetchall, dedupe and sanitizers in Python, "
        f"executemany INSERT), measured on the first {naive['subset_rows']:,} source rows: {t['total']:.2f} s "
        f"(fetch {t['fetch']:.2f}, Python {t['python']:.2f}, insert {t['insert']:.2f}), "
        f"{rate(naive['subset_rows'], t['total'])} rows/s, peak RSS {naive['peak_rss_mb']:.0f} MB{scaled}"
    )
    peak = max(r["peak_rss_mb"] for r in res["stages"])
    worst = max(res["stages"], key=lambda r: r["peak_rss_mb"])["stage"]
    ratio_limit = ours_total / limit_total
    ratio_naive = naive_scaled / ours_total
    print(f"\nGoals at {rows:,} rows:")
    print(
        f"  end to end within {LIMIT_GOAL}x of the limit: {ratio_limit:.2f}x -> {'met' if ratio_limit <= LIMIT_GOAL else 'MISSED'}"
    )
    print(
        f"  at least {NAIVE_GOAL:.0f}x faster than naive: naive/ours {ratio_naive:.1f}x -> {'met' if ratio_naive >= NAIVE_GOAL else 'MISSED'}"
    )
    print(
        f"  peak RSS under {RSS_GOAL_MB} MB in every stage: highest {peak:.1f} MB ({worst}) -> {'met' if peak < RSS_GOAL_MB else 'MISSED'}"
    )
    print(f"(load average {res['load_average_end']:.2f} at the end: other work on the machine skews the times)")
    return {"ours_s": ours_total, "limit_s": limit_total, "naive_scaled_s": naive_scaled}


def report_growth(first: dict[str, Any], last: dict[str, Any]) -> None:
    print(f"\nPeak RSS growth from {first['rows']:,} to {last['rows']:,} rows (goal: at most {RSS_GROWTH_GOAL:.0%}):")
    print(f"{'stage':<13} {'small MB':>9} {'large MB':>9} {'growth':>8}")
    worst = 0.0
    for a, b in zip(first["stages"], last["stages"], strict=True):
        growth = b["peak_rss_mb"] / a["peak_rss_mb"] - 1
        worst = max(worst, growth)
        print(f"{a['stage']:<13} {a['peak_rss_mb']:>9.1f} {b['peak_rss_mb']:>9.1f} {growth:>+8.1%}")
    print(f"  -> {'met' if worst <= RSS_GROWTH_GOAL else 'MISSED'} (largest growth {worst:+.1%})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_naive"]:  # the naive path's own process
        naive_child(argv[1], int(argv[2]), Path(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rows",
        default="2000000",
        help="source rows; a comma list runs each size (default 2000000; e.g. 1000000,10000000)",
    )
    parser.add_argument("--dup-every", type=int, default=20, help="every Nth row repeats a key (default 20: 5%%)")
    parser.add_argument(
        "--buffer-pool-mb", type=int, default=2048, help="InnoDB buffer pool of the private server (default 2048)"
    )
    parser.add_argument("--naive-rows", type=int, default=200_000, help="rows for the naive path (default 200,000)")
    parser.add_argument(
        "--profile", action="store_true", help="a second, unmeasured pass of every stage under cProfile"
    )
    parser.add_argument("--profile-top", type=int, default=15, help="functions shown per profiled stage")
    parser.add_argument(
        "--variant",
        type=Path,
        help="a Python file run in each stage process before etlctl (a monkeypatched prototype of a runtime "
        "change): adds A/B passes, the runtime as it is against the prototype",
    )
    parser.add_argument("--variant-rounds", type=int, default=2, help="A/B rounds (default 2)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--work-dir", type=Path, help="keep the servers and files here (default: a temp dir)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--rows {args.rows!r}: expected a number or a comma list of numbers")
    if not sizes or min(sizes) < 10:
        parser.error("--rows must be at least 10")
    if args.variant:
        if not args.variant.is_file():
            parser.error(f"--variant {args.variant}: no such file")
        args.variant = args.variant.resolve()

    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="bench-etl-"))).resolve()
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"ETL pipeline bench, sizes {', '.join(f'{s:,}' for s in sizes)}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    results = []
    try:
        for rows in sizes:
            results.append(run_size(rows, args, work / f"rows-{rows}"))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    for res in results:
        res["summary"] = report_size(res)
    if len(results) > 1:
        report_growth(results[0], results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
