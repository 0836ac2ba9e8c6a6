"""The Entities page (entity_etl/ui) for many entities: answer time from SQLite and from moto DynamoDB,
and every DynamoDB API call counted by operation (a botocore ``before-call`` hook): Query only, no Scan.

The run store holds ``--entities`` entities x ``--runs`` runs: per run its run record (with the summary
``close_run`` stores) and, in SQLite, ``--stages`` stage records (in DynamoDB ``--dynamo-stages``:
loading moto item by item is slow; the page's Query filters them out either way). The records are
written in bulk with the stores' own schema. The page is asked ``--repeat`` times through FastAPI's
TestClient (the app the API server mounts, without Airflow's login check); the entity list is given
(the cached parse of the entity files is not what is measured).

With ``--baseline REF`` the SQLite page is also timed with the ``plugins/`` tree of git revision REF
(``git archive``), side by side: the two run in fresh child processes, alternating, on the same file,
each answering ``--repeat`` requests; wall time and the child's CPU time are printed for each (on a
shared machine the CPU time is the steadier figure).

Run: ``make bench-entities-page`` or ``uv run --frozen --all-extras python bench/entities_page.py
[--entities 1000] [--runs 100] [--stages 6] [--dynamo-entities N] [--dynamo-stages 0] [--repeat 5]
[--baseline REF] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "plugins"))  # after PYTHONPATH: a --baseline child imports the tree it is given
sys.path.insert(0, str(ROOT / "tests"))

from entity_etl.runtime.run_store import RUN, DynamoRunStore, RunStore, SqliteRunStore  # noqa: E402
from entity_etl.ui.app import create_app  # noqa: E402
from entity_etl.ui.entity_list import EntityInfo  # noqa: E402

STAGE_NAMES = ["cleanup", "extract", "load_staging", "translate", "dedupe", "load_target", "publish"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def records(entities: int, runs: int, stages: int) -> Any:
    """(entity, run_id, stage, status, started_at, ended_at, stats) of every record."""
    for e in range(entities):
        entity = f"e{e:04d}"
        for r in range(runs):
            start = T0 + dt.timedelta(days=r, minutes=e % 60)
            run_id = f"scheduled__{(T0 + dt.timedelta(days=r)).isoformat()}"
            end = start + dt.timedelta(seconds=60 + (e * 7 + r * 13) % 300)
            summary = {
                "status": "succeeded",
                "interval_start": (T0 + dt.timedelta(days=r - 1)).isoformat(),
                "interval_end": (T0 + dt.timedelta(days=r)).isoformat(),
                "rows_extracted": 1000 + r,
                "rows_loaded": 900 + (e + r * 31) % 200,
                "duration_s": (end - start).total_seconds(),
                "resumed_chunks": 0,
            }
            yield entity, run_id, RUN, "succeeded", start.isoformat(), end.isoformat(), {"summary": summary}
            for s in STAGE_NAMES[:stages]:
                stats = {"rows_in": 1000, "rows_out": 1000, "details": {"parts": 4}}
                yield entity, run_id, s, "succeeded", start.isoformat(), end.isoformat(), stats


def fill_sqlite(path: Path, entities: int, runs: int, stages: int) -> SqliteRunStore:
    store = SqliteRunStore(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO etl_runs VALUES (?, ?, ?, ?, 2, 1, ?, ?, substr(?, 1, 10), ?, '', '', '')",
            (
                (e, r, s, st, a, b, a, json.dumps(stats, sort_keys=True))
                for e, r, s, st, a, b, stats in records(entities, runs, stages)
            ),
        )
    conn.close()
    return store


def fill_dynamo(client: Any, table: str, entities: int, runs: int, stages: int) -> DynamoRunStore:
    client.create_table(**DynamoRunStore.table_definition(table))
    batch: list[dict[str, Any]] = []
    for e, r, s, st, a, b, stats in records(entities, runs, stages):
        item = {
            "entity": {"S": e},
            "record": {"S": f"{r}#{s}"},
            "run_id": {"S": r},
            "stage": {"S": s},
            "status": {"S": st},
            "status_rank": {"N": "2"},
            "attempt": {"N": "1"},
            "started_at": {"S": a},
            "ended_at": {"S": b},
            "day": {"S": a[:10]},
            "stats": {"S": json.dumps(stats, sort_keys=True)},
            "error": {"S": ""},
        }
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == 25:
            client.batch_write_item(RequestItems={table: batch})
            batch = []
    if batch:
        client.batch_write_item(RequestItems={table: batch})
    return DynamoRunStore(table, client)


def time_page(store: RunStore, infos: list[EntityInfo], repeat: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU seconds of each of ``repeat`` page requests, and the page's size."""
    from fastapi.testclient import TestClient

    client = TestClient(create_app(store=lambda: store, entity_list=lambda: infos, require_login=False))
    times, cpu, size = [], [], 0
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        answer = client.get("/")
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if answer.status_code != 200 or answer.text.count("<tr data-entity=") != len(infos):
            raise SystemExit(f"wrong page: HTTP {answer.status_code}, {answer.text.count('<tr data-entity=')} rows")
        size = len(answer.content)
    return times, cpu, size


def _infos(entities: int) -> list[EntityInfo]:
    return [EntityInfo(f"e{e:04d}", f"etl_e{e:04d}", "@daily") for e in range(entities)]


def child_page(db: Path, entities: int, repeat: int) -> None:
    """The child process of ``--baseline``: the page of the ``entity_etl`` on its PYTHONPATH, as JSON."""
    times, cpu, size = time_page(SqliteRunStore(db), _infos(entities), repeat)
    print(json.dumps({"wall": times, "cpu": cpu, "size": size, "code": str(Path(create_app.__code__.co_filename))}))


def compare(db: Path, tmp: Path, ref: str, entities: int, repeat: int, rounds: int) -> None:
    """The SQLite page with REF's ``plugins/`` and with this tree's, in alternating child processes."""
    base = tmp / "baseline"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "plugins"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    trees = {f"baseline {ref}": base / "plugins", "this tree": ROOT / "plugins"}
    found: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in trees}
    pages: dict[str, int] = {}
    for _ in range(rounds):
        for name, plugins in trees.items():
            env = {**os.environ, "PYTHONPATH": str(plugins)}
            command = [sys.executable, __file__, "--child-page", str(db), "--entities", str(entities)]
            out = subprocess.run([*command, "--repeat", str(repeat)], env=env, check=True, capture_output=True)
            result = json.loads(out.stdout.decode().strip().splitlines()[-1])
            if not result["code"].startswith(str(plugins)):
                raise SystemExit(f"{name}: ran {result['code']}, not the code under {plugins}")
            found[name]["wall"] += result["wall"]
            found[name]["cpu"] += result["cpu"]
            pages[name] = result["size"]
    print("sqlite page size: " + ", ".join(f"{name} {size:,} bytes" for name, size in pages.items()))
    medians = {name: {k: statistics.median(v) for k, v in f.items()} for name, f in found.items()}
    for name, m in medians.items():
        walls = ", ".join(f"{x * 1000:.0f}" for x in found[name]["wall"])
        print(f"sqlite page, {name}: median wall {m['wall'] * 1000:.0f} ms, cpu {m['cpu'] * 1000:.0f} ms ({walls} ms)")
    (old, new) = medians.values()
    print(f"speed-up (baseline / this tree): wall {old['wall'] / new['wall']:.1f}x, cpu {old['cpu'] / new['cpu']:.1f}x")
    print(f"sqlite under 1 s in the child processes: {'yes' if new['wall'] < 1 else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=1000, help="entities in the run store")
    parser.add_argument("--runs", type=int, default=100, help="runs per entity")
    parser.add_argument("--stages", type=int, default=6, help="stage records per run in SQLite")
    parser.add_argument("--dynamo-entities", type=int, default=0, help="entities in DynamoDB (default: --entities)")
    parser.add_argument("--dynamo-runs", type=int, default=0, help="runs per entity in DynamoDB (default: --runs)")
    parser.add_argument("--dynamo-stages", type=int, default=0, help="stage records per run in DynamoDB")
    parser.add_argument("--repeat", type=int, default=5, help="page requests per store (per child with --baseline)")
    parser.add_argument("--baseline", metavar="REF", help="also time the SQLite page with git revision REF's plugins/")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per tree with --baseline")
    parser.add_argument("--child-page", type=Path, metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_page:
        child_page(args.child_page, args.entities, args.repeat)
        return
    infos = _infos(args.entities)
    dynamo_entities, dynamo_runs = args.dynamo_entities or args.entities, args.dynamo_runs or args.runs

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        sqlite_store = fill_sqlite(Path(tmp) / "state.db", args.entities, args.runs, args.stages)
        print(
            f"sqlite: {args.entities * args.runs * (1 + args.stages):,} records written in {time.perf_counter() - t:.1f} s"
        )
        sq_times, sq_cpu, size = time_page(sqlite_store, infos, args.repeat)
        print(
            f"sqlite page: {size:,} bytes; "
            + ", ".join(f"{x * 1000:.0f} ms (cpu {c * 1000:.0f})" for x, c in zip(sq_times, sq_cpu, strict=True))
        )
        if args.baseline:
            compare(sqlite_store.path, Path(tmp), args.baseline, args.entities, args.repeat, args.rounds)

        from support.servers import start_moto

        (Path(tmp) / "moto").mkdir()
        moto = start_moto(Path(tmp) / "moto")
        try:
            os.environ.update(
                AWS_ENDPOINT_URL=moto.endpoint,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's fake credentials
                AWS_DEFAULT_REGION="eu-west-1",
            )
            import boto3

            client = boto3.client("dynamodb")
            t = time.perf_counter()
            dynamo_store = fill_dynamo(client, "runs", dynamo_entities, dynamo_runs, args.dynamo_stages)
            written = dynamo_entities * dynamo_runs * (1 + args.dynamo_stages)
            print(f"dynamodb (moto): {written:,} items written in {time.perf_counter() - t:.1f} s")
            calls: collections.Counter[str] = collections.Counter()
            client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
            dy_times, _, _ = time_page(dynamo_store, infos[:dynamo_entities], args.repeat)
        finally:
            moto.stop()
    print(
        f"dynamodb page ({dynamo_entities} entities x {dynamo_runs} runs): "
        + ", ".join(f"{x * 1000:.0f} ms" for x in dy_times)
    )
    per_page = {op: n / args.repeat for op, n in sorted(calls.items())}
    print(f"dynamodb calls per page: {per_page}")
    if set(calls) != {"Query"}:
        raise SystemExit(f"the page made DynamoDB calls other than Query: {dict(calls)}")
    sq, dy = statistics.median(sq_times), statistics.median(dy_times)
    print(f"\nmedian page answer: sqlite {sq * 1000:.0f} ms, dynamodb (moto) {dy * 1000:.0f} ms; ratio {dy / sq:.1f}x")
    print(f"sqlite under 1 s: {'yes' if sq < 1 else 'NO'}")


if __name__ == "__main__":
    main()
