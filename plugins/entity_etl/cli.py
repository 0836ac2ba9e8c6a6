"""``etlctl``: validate entity files, run one stage, list runs, show the entity lease, export the JSON Schema.

Runs without Airflow installed (it is the AWS Batch container's entrypoint). Exit codes: 0 done;
1 a failure (a stage, a refused stage or lease take-over, a missing run store); 2 a usage error
(argparse's code: a missing or bad option, an unknown entity, an invalid entity file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from entity_etl.config.loader import EntityConfigError, default_paths, load_entities
from entity_etl.config.model import EntityConfig
from entity_etl.runtime.progress import configure_logging
from entity_etl.runtime.redaction import install_log_redaction, redact
from entity_etl.runtime.remote_include import RemoteIncludeError
from entity_etl.runtime.stages import STAGES, StageError, run_stage


def _cmd_validate(args: argparse.Namespace) -> int:
    entities_dir, sql_dir = default_paths()
    result = load_entities(args.entities_dir or entities_dir, args.sql_dir or sql_dir)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    for config in result.entities.values():
        state = "enabled" if config.enabled else "disabled"
        print(f"ok: {config.entity} ({state}, schedule {config.schedule}, stages {' > '.join(config.stages)})")
    if result.problems:
        print(f"{len(result.problems)} problem(s) found", file=sys.stderr)
        return 1
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    schema = EntityConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Entity ETL entity file (include/entities/<entity>.yaml)"
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


class UsageError(ValueError):
    """A bad option value found after parsing (exit 2, like argparse's own usage errors)."""


def _cmd_run_stage(args: argparse.Namespace) -> int:
    from entity_etl.runtime.context import build_context
    from entity_etl.runtime.stages.order import unfinished_predecessor

    configure_logging()  # ISO-timed lines on stderr at $ETL_LOG_LEVEL, default INFO
    install_log_redaction()  # again: on the handler configure_logging added

    ctx = build_context(
        entity=args.entity,
        run_id=args.run_id,
        interval_start=args.interval_start,
        interval_end=args.interval_end,
        object_store_url=args.object_store,
    )
    ctx.partition = _partition(args)
    # A hand run checks the stage order; under an orchestrator (ETL_LEASE_OWNER) the DAG orders them.
    missing = None if args.force or ctx.lease_owner else unfinished_predecessor(ctx, args.stage)
    if missing:
        raise StageError(missing)
    stats = run_stage(ctx, args.stage)  # logs the plan, the progress and the statistics table on stderr
    print(stats.to_json())
    return 0


def _partition(args: argparse.Namespace) -> int | None:
    """``--partition``, else an AWS Batch array child's ``AWS_BATCH_JOB_ARRAY_INDEX`` (extract only)."""
    if args.partition is not None:
        return int(args.partition)
    index = os.environ.get("AWS_BATCH_JOB_ARRAY_INDEX")
    if args.stage != "extract" or not index:
        return None
    if not index.isdigit():
        raise ValueError(f"AWS_BATCH_JOB_ARRAY_INDEX={index!r} is not an index")
    return int(index)


def _entity_file(entity: str) -> Path | None:
    entities_dir, _ = default_paths()
    found = [entities_dir / f"{entity}{suffix}" for suffix in (".yaml", ".yml")]
    return next((path for path in found if path.is_file()), None)


def _unknown_entity(entity: str, where: str = "") -> UsageError:
    entities_dir, _ = default_paths()
    return UsageError(f"--entity {entity!r}: no such entity (no {entities_dir / (entity + '.yaml')}{where})")


def _existing_run_store() -> Any:
    """The run store the stages use, without creating an empty SQLite file where there is none."""
    from entity_etl.runtime.run_store import default_state_path, open_run_store

    path = default_state_path()
    if os.environ.get("ETL_STATE_STORE", "sqlite") == "sqlite" and not path.is_file():
        raise ValueError(
            f"run store: sqlite {path} does not exist (no stage has run with this ETL_STATE_DB; "
            "make demo uses .demo/state.db, make airflow .airflow-local/state.db)"
        )
    return open_run_store()


def _cmd_runs(args: argparse.Namespace) -> int:
    store = _existing_run_store()
    records = store.attempts(args.entity, since=args.since)
    if not records and _entity_file(args.entity) is None and not store.by_entity(args.entity):
        raise _unknown_entity(args.entity, f" and no records in run store {store.describe()}")
    print(f"run store: {store.describe()}")
    print(format_runs(records))
    return 0


def _iso(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat(timespec="seconds")


def _cmd_lease(args: argparse.Namespace) -> int:
    from entity_etl.runtime.lease import open_lease_store
    from entity_etl.runtime.lease_takeover import take_over_dead

    if _entity_file(args.entity) is None:
        raise _unknown_entity(args.entity)
    store = open_lease_store()
    if args.take_over_dead:
        released, line = take_over_dead(store, args.entity)
        print(line, file=sys.stdout if released else sys.stderr)
        return 0 if released else 1
    lease = store.holder(args.entity)
    if lease is None:
        print(f"{args.entity}: the entity lease is free")
        return 0
    left = int(lease.expires_at - dt.datetime.now(dt.UTC).timestamp())
    state = f"in {left}s" if left >= 0 else f"expired {-left}s ago"
    print(f"{args.entity}: held by {lease.owner}")
    print(f"acquired_at: {_iso(lease.acquired_at)}")
    print(f"expires_at: {_iso(lease.expires_at)} ({state})")
    print(f"epoch: {lease.epoch}")
    return 0


def _since_arg(value: str) -> str:
    try:
        return _since(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timestamp_arg(value: str) -> str:
    from entity_etl.runtime.context import parse_timestamp

    try:
        parse_timestamp(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. 2026-11-01T00:00:00+00:00)") from None
    return value


def _since(value: str) -> str:
    """``--since`` as the run store compares it: ``YYYY-MM-DD``, or a UTC ``YYYY-MM-DDTHH:MM:SS[.fff]``.

    A timestamp without an offset is UTC; one with an offset is converted (``started_at`` is UTC).
    """
    text = value.strip()
    try:
        if len(text) <= 10:
            return dt.date.fromisoformat(text).isoformat()
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO date or timestamp (e.g. 2026-11-01 or 2026-11-01T08:00:00+00:00)"
        ) from None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{when.microsecond // 1000:03d}" if when.microsecond else stamp


def _cell(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (an error may span lines)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_runs(records: list[Any]) -> str:
    """The ``etlctl runs`` table: one line per attempt of a stage (``try``); ``job`` is the AWS Batch job id."""
    header = ["run_id", "stage", "status", "try", "started_at", "ended_at", "rows_out", "job", "error"]
    rows = [
        [
            r.run_id,
            r.stage,
            r.status,
            str(r.attempt),
            r.started_at[:19],
            r.ended_at[:19],
            f"{r.stats.get('rows_out', ''):,}" if isinstance(r.stats.get("rows_out"), int) else "",
            r.batch_job_id or "",
            _cell(r.error, 60),
        ]
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) if rows else "no run records"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etlctl",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="exit codes: 0 done, 1 failure, 2 usage error (a bad option, an unknown entity, a bad entity file)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check every entity file; print file: field: message")
    validate.add_argument("--entities-dir", type=Path, help="the entity files (default: $ETL_ENTITIES_DIR)")
    validate.add_argument("--sql-dir", type=Path, help="the extract SQL files (default: $ETL_SQL_DIR)")
    validate.set_defaults(func=_cmd_validate)

    schema = sub.add_parser("schema", help="print (or write) the entity file JSON Schema")
    schema.add_argument("--output", "-o", help="write the schema to this file instead of stdout")
    schema.set_defaults(func=_cmd_schema)

    run = sub.add_parser("run-stage", help="run one stage of one entity run")
    run.add_argument("--entity", required=True, help="the entity id (include/entities/<entity>.yaml)")
    run.add_argument("--stage", required=True, choices=STAGES, help="the stage to run")
    run.add_argument("--run-id", required=True, help="the run the stage belongs to (its run store records)")
    run.add_argument(
        "--interval-start", required=True, type=_timestamp_arg, help="ISO 8601, e.g. 2024-01-01T00:00:00+00:00"
    )
    run.add_argument("--interval-end", required=True, type=_timestamp_arg, help="ISO 8601, not before the start")
    run.add_argument("--object-store", help="override ETL_OBJECT_STORE_URL")
    run.add_argument(
        "--partition",
        type=int,
        help="extract only this key-range partition (default: $AWS_BATCH_JOB_ARRAY_INDEX, else all)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="run even if an earlier stage of the entity has not succeeded for this run (hand runs check it)",
    )
    run.set_defaults(func=_cmd_run_stage)

    runs = sub.add_parser("runs", help="list every attempt of every stage of one entity, from the run store")
    runs.add_argument("--entity", required=True, help="the entity id")
    runs.add_argument(
        "--since",
        type=_since_arg,
        help="ISO date or timestamp (UTC unless it has an offset); records started at or after it",
    )
    runs.set_defaults(func=_cmd_runs)

    lease = sub.add_parser("lease", help="show the entity lease's holder and expiry, or take over a dead one")
    lease.add_argument("--entity", required=True, help="the entity id")
    lease.add_argument(
        "--take-over-dead",
        action="store_true",
        help="release the lease if its holder is provably gone: expired, or an etlctl hand run on this "
        "host whose process no longer exists; never a live holder (exit 1 then, saying why)",
    )
    lease.set_defaults(func=_cmd_lease)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    install_log_redaction()  # the runtime's log records go out redacted, as its errors do
    try:
        return int(args.func(args))
    except EntityConfigError as exc:
        for problem in exc.problems:
            print(f"etlctl: error: {problem}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"etlctl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (StageError, RemoteIncludeError, ValueError) as exc:
        print(f"etlctl: error: {redact(str(exc))}", file=sys.stderr)
        return 1
    except Exception:  # unexpected: the traceback still helps, but redacted like everything else
        print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
