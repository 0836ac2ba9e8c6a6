"""What every stage works on: the run's :class:`RunContext`, the per-attempt :class:`Attempt`, and the
names derived from them (object keys, run-store record names)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entity_etl.config.model import EntityConfig
from entity_etl.runtime import fencing, object_keys
from entity_etl.runtime.connections import ConnectionInfo, ConnectionResolver
from entity_etl.runtime.databases import Database, open_database
from entity_etl.runtime.lease import LeaseKeeper, LeaseStore
from entity_etl.runtime.metrics import MetricsSink
from entity_etl.runtime.object_store import ObjectStore
from entity_etl.runtime.redaction import redact
from entity_etl.runtime.run_store import RunStore
from entity_etl.runtime.translators import Translator

STAGES = ("cleanup", "extract", "load_staging", "translate", "dedupe", "load_target")
TRANSLATION_CACHE_TABLE = "etl_translation_cache"
ROW_ID = "_etl_row"


class StageError(RuntimeError):
    """A stage failed; the message names the entity, the stage and the cause, on one line."""

    def __init__(self, message: str) -> None:
        # One line whatever the cause says: a server error may quote a multi-line query. Redacted: it
        # goes to stderr, the run store, the Airflow log and the notifications.
        super().__init__(redact(" ".join(message.split())))


@dataclass
class RunContext:
    config: EntityConfig
    run_id: str
    interval_start: dt.datetime
    interval_end: dt.datetime
    store: ObjectStore
    resolve_connection: ConnectionResolver
    sql_dir: Path
    translator_factory: Callable[[], Translator]
    translate_page: int = 1_000
    scratch_dir: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: Durable stage records (DynamoDB / SQLite); None: not recorded.
    run_store: RunStore | None = None
    #: The entity lease; None: not checked.
    lease_store: LeaseStore | None = None
    #: The lease owner when an Airflow run holds the lease (``ETL_LEASE_OWNER``); None: a stage run by
    #: hand, which takes the lease itself for its duration.
    lease_owner: str | None = None
    metrics: MetricsSink | None = None
    #: Airflow's try number (``ETL_ATTEMPT``); None: one more than the stored attempt.
    attempt: int | None = None
    batch_job_id: str = ""
    #: The extract partition of an array-job child (``AWS_BATCH_JOB_ARRAY_INDEX``); None: all of them.
    partition: int | None = None
    #: The lease epoch the submitting task saw (``ETL_LEASE_EPOCH``); None: whatever this run holds.
    lease_epoch: int | None = None

    @property
    def entity(self) -> str:
        return self.config.entity

    @property
    def run_key(self) -> str:
        """``run_id`` made safe for an object key (:func:`entity_etl.runtime.object_keys.run_key`)."""
        return object_keys.run_key(self.run_id)

    @property
    def extract_prefix(self) -> str:
        return object_keys.extract_prefix(self.entity, self.run_id)

    @property
    def manifest_key(self) -> str:
        return object_keys.manifest_key(self.entity, self.run_id)

    def stats_key(self, stage: str) -> str:
        return object_keys.stats_key(self.entity, self.run_id, stage)

    def interval_params(self) -> dict[str, str]:
        fmt = "%Y-%m-%d %H:%M:%S"
        return {
            "data_interval_start": _utc(self.interval_start).strftime(fmt),
            "data_interval_end": _utc(self.interval_end).strftime(fmt),
        }

    def connect(self, conn_id: str, *, local_infile: bool = False, read_only: bool = False) -> Database:
        """``local_infile``: allow ``LOAD DATA LOCAL INFILE`` (MySQL), only for the connection that loads.
        ``read_only``: the source, which is only read (a missing SQLite source file is an error)."""
        info: ConnectionInfo = self.resolve_connection(conn_id)
        db = open_database(info, local_infile=local_infile, read_only=read_only)
        db.connect()
        return db


@dataclass(frozen=True)
class Attempt:
    """What :func:`run_stage` knows about this one attempt of a stage, handed to the stage function
    (the run's :class:`RunContext` is never written to)."""

    #: Continue an unfinished attempt from its checkpoints; False when the stage had already succeeded
    #: and is being redone (from the run store).
    resume: bool = True
    #: Raises once the entity lease is lost; called before each checkpoint. None: no lease is held.
    lease_guard: Callable[[], None] | None = None
    #: This run's fencing token; ``fencing.check`` before each commit. None: the stage is not fenced.
    fence: fencing.Fence | None = None
    #: The attempt number recorded in the run store (None: not known, no run store).
    number: int | None = None
    #: The lease keeper behind ``lease_guard`` (its owner and epoch), for the extract's worker
    #: processes, which join that lease as array-job children do. None: no lease is held.
    lease: LeaseKeeper | None = None


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def partition_stage(index: int, count: int) -> str:
    """The checkpoint and record name of extract partition ``index`` of ``count``: ``extract.pNN``
    (``extract`` when the extract has one partition)."""
    return "extract" if count == 1 else f"extract.p{index:02d}"


def partition_prefix(ctx: RunContext, index: int) -> str:
    """Where extract partition ``index`` puts its parts (the extract prefix when there is one)."""
    return ctx.extract_prefix if ctx.config.extract_partitions == 1 else f"{ctx.extract_prefix}p{index:02d}/"


def record_name(ctx: RunContext, stage: str) -> str:
    """The run-store record of this stage run: ``extract.pNN`` for one partition of an array job."""
    if stage == "extract" and ctx.partition is not None and ctx.config.extract_partitions > 1:
        return partition_stage(ctx.partition, ctx.config.extract_partitions)
    return stage


def count_rows(db: Database, table: str) -> int:
    return int(db.query(f"SELECT COUNT(*) FROM {db.table(table)}")[0][0])


def staging_columns(config: EntityConfig) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in config.columns]


def previous_stats(ctx: RunContext, stage: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(ctx.store.get_bytes(ctx.stats_key(stage)))
    except FileNotFoundError:
        return None
    return data
