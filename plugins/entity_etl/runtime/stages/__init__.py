"""The six stages of an entity run, as plain functions over a :class:`RunContext`.

Every stage is idempotent for a given run: running it again gives the same result.

* cleanup       drop and recreate the staging table from the entity's columns
* extract       source query (bound to the run's data interval) -> gzip CSV parts + manifest
* load_staging  manifest parts -> staging (LOAD DATA LOCAL INFILE / batched inserts), atomically
* translate     distinct values of the configured columns, via a cache table, in place
* dedupe        DELETE all but one row per business key, in SQL
* load_target   chunked upsert from staging into the target, sanitizers applied

Each stage is a module of this package; ``runner.run_stage`` runs one under the lease, the run store
and the metrics; ``context`` holds what they share. The names here are the package's interface.
"""

from entity_etl.runtime.stages.cleanup import cleanup
from entity_etl.runtime.stages.context import (
    ROW_ID,
    STAGES,
    TRANSLATION_CACHE_TABLE,
    Attempt,
    RunContext,
    StageError,
    record_name,
)
from entity_etl.runtime.stages.dedupe import dedupe, dedupe_order, dedupe_sql
from entity_etl.runtime.stages.extract import extract
from entity_etl.runtime.stages.load_staging import load_staging
from entity_etl.runtime.stages.load_target import load_target
from entity_etl.runtime.stages.manifest import read_manifest
from entity_etl.runtime.stages.runner import FENCED_STAGES, STAGE_FUNCTIONS, run_stage
from entity_etl.runtime.stages.translate import translate

__all__ = [
    "FENCED_STAGES",
    "ROW_ID",
    "STAGES",
    "STAGE_FUNCTIONS",
    "TRANSLATION_CACHE_TABLE",
    "Attempt",
    "RunContext",
    "StageError",
    "cleanup",
    "dedupe",
    "dedupe_order",
    "dedupe_sql",
    "extract",
    "load_staging",
    "load_target",
    "read_manifest",
    "record_name",
    "run_stage",
    "translate",
]
