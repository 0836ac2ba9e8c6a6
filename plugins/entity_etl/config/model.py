"""The entity schema: one ``include/entities/<entity>.yaml`` validates into one :class:`EntityConfig`.

Every model forbids unknown keys and is strict about types: a boolean is only ``true``/``false``, an
integer only an integer (``"5"``, ``5.5`` and ``true`` are errors), a float a finite number. The loader
turns pydantic's errors into ``file: field: message`` lines (``columns[3].name``) with a "did you mean"
hint; checks across fields raise :func:`field_error`, naming the field they are about.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
from typing import Annotated, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from entity_etl.config.identifiers import (
    IDENTIFIER_PATTERN,
    TABLE_PATTERN,
    check_identifier,
    check_table_name,
    same_table,
)
from entity_etl.config.problems import field_error

# The checks' own messages, and their patterns in the JSON Schema (an editor flags what the loader refuses).
Identifier = Annotated[str, AfterValidator(check_identifier), Field(json_schema_extra={"pattern": IDENTIFIER_PATTERN})]
TableName = Annotated[str, AfterValidator(check_table_name), Field(json_schema_extra={"pattern": TABLE_PATTERN})]
ConnId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
SqlPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9_./-]+\.sql$")]
#: A float that is a number (an int is fine), never a string, a boolean, infinity or NaN.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
#: Minutes of a timedelta: at most a year (timedelta(minutes=1e12) would fail the DAG build).
MAX_MINUTES = 525_600

#: ``compute.environment`` names the job's own settings use: an entity may not override them.
RESERVED_ENV_PREFIXES = ("ETL_", "AWS_", "AIRFLOW_CONN_")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

#: Airflow's schedule presets, as the cron expressions they stand for.
SCHEDULE_PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@functools.lru_cache(maxsize=1024)
def _valid_cron(expression: str) -> bool:
    """``croniter.is_valid``, once per expression: entities share a few schedules, and a check costs 0.1 ms."""
    return bool(croniter.is_valid(expression))


_COLUMN_TYPE = re.compile(
    r"^(string(\((?P<len>\d{1,5})\))?|text|integer|bigint|float|boolean|date|datetime"
    r"|decimal\((?P<p>\d{1,2}),\s*(?P<s>\d{1,2})\))$"
)


def _schema_pattern(regex: re.Pattern[str]) -> str:
    """``regex`` as the JSON Schema sees a column type: any case, surrounding spaces, no group names."""
    body = re.sub(r"\(\?P<\w+>", "(", regex.pattern.removeprefix("^").removesuffix("$"))
    body = re.sub(r"(?<!\\)[a-z]", lambda m: f"[{m.group().upper()}{m.group()}]", body)
    return rf"^\s*{body}\s*$"


def _int_or_str(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is neither an integer nor a string")
    return value


#: A ``source.split_points`` value: an integer or a string (one error, not one per union member).
SplitPoint = Annotated[int | str, BeforeValidator(_int_or_str)]

Sanitizer = Literal["trim", "null_if_empty", "upper", "lower"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class SourceConfig(StrictModel):
    conn_id: ConnId = Field(description="Airflow connection id of the source database.")
    extract_sql: SqlPath = Field(
        description="Path under include/sql/ of the extract query. It may use the bind parameters "
        ":data_interval_start and :data_interval_end (ISO timestamps of the run's data interval)."
    )
    fetch_rows: StrictInt = Field(10_000, ge=100, le=1_000_000, description="Rows per server-side fetch.")
    chunk_rows: StrictInt = Field(
        1_000_000, ge=1_000, description="Rows per extract object (one gzip CSV file per chunk)."
    )
    chunk_key: Identifier | None = Field(
        None,
        description="Column the extract is chunked by (keyset ranges, each chunk checkpointed for resume). "
        "Default: the first dedupe key column. Best the leading column of an index in the source.",
    )
    split_points: list[SplitPoint] = Field(
        default_factory=list,
        max_length=99,
        description="chunk_key values that cut the extract into len+1 key-range partitions (key <= first, ..., "
        "key > last and NULL keys); on AWS Batch the extract is then an array job, one child per partition.",
    )

    @field_validator("split_points")
    @classmethod
    def _increasing(cls, value: list[int | str]) -> list[int | str]:
        if len({type(v) for v in value}) > 1:
            raise ValueError("mixes numbers and strings; quote them all or none")
        if any(b <= a for a, b in itertools.pairwise(value)):  # type: ignore[operator]
            raise ValueError(f"must be strictly increasing: {value}")
        return value


class StagingConfig(StrictModel):
    table: TableName = Field(
        description="Staging table, on the target connection (the target load is INSERT ... SELECT). "
        "The pipeline owns it: cleanup drops and recreates it from `columns`."
    )


class TargetConfig(StrictModel):
    conn_id: ConnId = Field(description="Airflow connection id of the target database (MySQL / RDS).")
    table: TableName = Field(description="Target table; created from `columns` if it does not exist.")
    chunk_rows: StrictInt = Field(
        200_000, ge=1_000, description="Staged rows per committed (and checkpointed) upsert into the target."
    )


class ColumnConfig(StrictModel):
    name: Identifier = Field(description="Column name in the extract query result and in staging.")
    type: str = Field(
        "string",
        json_schema_extra={"pattern": _schema_pattern(_COLUMN_TYPE)},
        description="string, string(N), text, integer, bigint, float, boolean, date, datetime, decimal(P,S)",
    )
    target: Identifier | None = Field(None, description="Column name in the target table (default: name).")
    sanitize: list[Sanitizer] = Field(
        default_factory=list, description="SQL clean-ups applied on the way to the target, in order."
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        value = value.strip().lower()
        match = _COLUMN_TYPE.fullmatch(value)
        if not match:
            raise ValueError(
                f"unknown column type {value!r}; use string, string(N), text, integer, bigint, float, "
                "boolean, date, datetime or decimal(P,S)"
            )
        if match.group("p") and int(match.group("s")) > int(match.group("p")):
            raise ValueError(f"{value!r}: scale is larger than precision")
        return value

    @property
    def target_name(self) -> str:
        return self.target or self.name


class DedupeConfig(StrictModel):
    key: list[Identifier] = Field(min_length=1, description="Business key: rows sharing it are duplicates.")
    keep: Literal["newest", "oldest", "first", "last"] = Field(
        "newest",
        description="newest/oldest by order_by; first/last in extract order.",
    )
    order_by: Identifier | None = Field(None, description="Column deciding newest/oldest.")

    @model_validator(mode="after")
    def _order_by_needed(self) -> DedupeConfig:
        if self.keep in ("newest", "oldest") and self.order_by is None:
            raise field_error(
                ("order_by",), f"keep: {self.keep} needs order_by (the column that says which row is newer)"
            )
        return self


class TranslateConfig(StrictModel):
    enabled: StrictBool = False
    columns: list[Identifier] = Field(default_factory=list)
    source_language: str = Field("auto", pattern=r"^(auto|[a-z]{2,3}(-[A-Za-z]{2,4})?)$")
    target_language: str = Field("en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")

    @model_validator(mode="after")
    def _columns_when_enabled(self) -> TranslateConfig:
        if self.enabled and not self.columns:
            raise field_error(("columns",), "translate.enabled is true but no columns are listed")
        return self


class ComputeConfig(StrictModel):
    job_queue: str = Field("etl-fargate", pattern=r"^[A-Za-z0-9_:/.-]{1,255}$")
    job_definition: str = Field("etl-stage", pattern=r"^[A-Za-z0-9_:/.-]{1,255}$")
    vcpu: Number = Field(1.0, description="Fargate vCPU: 0.25, 0.5, 1, 2, 4, 8 or 16.")
    memory_mib: StrictInt = Field(2048, ge=512, le=122_880)
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Extra container env vars; names starting ETL_, AWS_ or AIRFLOW_CONN_ are the job's own "
        "settings and are refused.",
        json_schema_extra={
            "propertyNames": {
                "pattern": _ENV_NAME,
                "not": {"pattern": "^(" + "|".join(RESERVED_ENV_PREFIXES) + ")"},
            }
        },
    )

    @field_validator("vcpu")
    @classmethod
    def _fargate_vcpu(cls, value: float) -> float:
        if value not in (0.25, 0.5, 1, 2, 4, 8, 16):
            raise ValueError(f"{value} is not a Fargate vCPU size (0.25, 0.5, 1, 2, 4, 8, 16)")
        return value

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(_ENV_NAME, name):
                raise field_error((name,), f"{name!r} is not a valid environment variable name")
            if name.startswith(RESERVED_ENV_PREFIXES):
                raise field_error(
                    (name,),
                    f"{name!r} may not be set by an entity: names starting {', '.join(RESERVED_ENV_PREFIXES)} "
                    "are the job's own settings, connections and AWS credentials",
                )
        return value


class NotifyConfig(StrictModel):
    """Run notifications through the SNS notifier (topic: ``topic_arn``, else ``$ETL_NOTIFY_TOPIC_ARN``)."""

    on_failure: StrictBool = Field(True, description="A task failed with no retries left, or the run failed.")
    on_success: StrictBool = Field(False, description="A success summary with the run's row counts.")
    max_run_minutes: Number | None = Field(
        None, gt=0, le=MAX_MINUTES, description="Alert when a run is still going this long after it was queued."
    )
    topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")


class ExpectRowsConfig(StrictModel):
    """How many rows one run's extract must find (the whole extract, every partition together)."""

    min: StrictInt = Field(
        0,
        ge=0,
        description="Fewer rows fail the extract, naming the entity, the interval and the minimum; "
        "the target is untouched. 0: no minimum (an extract with no rows only warns).",
    )


class EntityConfig(StrictModel):
    entity: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$", description="Entity id; the DAG is etl_<entity>.")
    enabled: StrictBool = True
    description: str = ""
    schedule: str | None = Field(
        description="Cron expression, an Airflow preset (@daily, @weekly, @monthly, ...) or null for manual runs only."
    )
    start_date: dt.date = Field(description="First data interval's date, YYYY-MM-DD.")
    timezone: str = "UTC"
    catchup: StrictBool = False
    owner: str = "data-platform"
    tags: list[str] = Field(default_factory=list)
    retries: StrictInt = Field(2, ge=0, le=10)
    retry_delay_minutes: Number = Field(5, ge=0, le=MAX_MINUTES)
    lease_wait_minutes: Number = Field(
        360,
        ge=0,
        le=MAX_MINUTES,
        description="How long a run waits for the entity lease; 0 fails at once, naming the holder.",
    )
    source: SourceConfig
    staging: StagingConfig
    target: TargetConfig
    columns: list[ColumnConfig] = Field(min_length=1)
    dedupe: DedupeConfig
    translate: TranslateConfig = Field(default_factory=lambda: TranslateConfig())
    compute: ComputeConfig = Field(default_factory=lambda: ComputeConfig())
    notify: NotifyConfig = Field(default_factory=lambda: NotifyConfig())
    expect_rows: ExpectRowsConfig = Field(
        default_factory=lambda: ExpectRowsConfig(),
        description="The rows a run's extract must find: {min: N}. Absent: an empty extract only warns.",
    )

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        if not isinstance(value, str):
            raise ValueError("must be a cron expression, a preset such as @daily, or null")
        value = value.strip()
        if value.startswith("@"):
            if value not in SCHEDULE_PRESETS:
                raise ValueError(f"unknown preset {value!r}; use one of {', '.join(SCHEDULE_PRESETS)}")
            return value
        if not _valid_cron(value) or len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a valid 5-field cron expression")
        return value

    @field_validator("start_date", mode="before")
    @classmethod
    def _date_not_number(cls, value: object) -> object:
        if isinstance(value, (int, float)):  # pydantic would read 20261101 as seconds since 1970
            raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> EntityConfig:
        error = (
            _duplicate_columns(self.columns)
            or _unknown_columns(self)
            or _key_sanitizers(self)
            or _staging_is_target(self.staging.table, self.target.table)
        )
        if error is not None:
            raise error
        return self

    # -- conveniences used by the runtime and the DAG factory -------------------------------------
    @property
    def extract_chunk_key(self) -> str:
        """The column the extract is chunked by."""
        return self.source.chunk_key or self.dedupe.key[0]

    @property
    def extract_partitions(self) -> int:
        """Key-range partitions of the extract (``source.split_points`` + 1)."""
        return len(self.source.split_points) + 1

    @property
    def dag_id(self) -> str:
        return f"etl_{self.entity}"

    @property
    def cron(self) -> str | None:
        if self.schedule is None:
            return None
        return SCHEDULE_PRESETS.get(self.schedule, self.schedule)

    @property
    def stages(self) -> list[str]:
        stages = ["cleanup", "extract", "load_staging"]
        if self.translate.enabled:
            stages.append("translate")
        return [*stages, "dedupe", "load_target"]

    def column(self, name: str) -> ColumnConfig:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


# -- checks across fields: each returns the error about the first field that is wrong, or None ------
def _duplicate_columns(columns: list[ColumnConfig]) -> PydanticCustomError | None:
    """Column names, and target column names, are unique ignoring case (as in MySQL and SQLite)."""
    for attr, field in (("name", "name"), ("target_name", "target")):
        seen: dict[str, int] = {}
        for i, column in enumerate(columns):
            name = getattr(column, attr)
            if name.lower() in seen:
                first = seen[name.lower()]
                what = "column name" if attr == "name" else "target column name"
                return field_error(("columns", i, field), f"duplicate {what} {name!r} (also columns[{first}])")
            seen[name.lower()] = i
    return None


def _unknown_columns(config: EntityConfig) -> PydanticCustomError | None:
    """dedupe.key, dedupe.order_by, translate.columns and source.chunk_key name columns of ``columns``."""
    names = [c.name for c in config.columns]
    references: list[tuple[tuple[int | str, ...], str | None]] = [
        *((("dedupe", "key", i), c) for i, c in enumerate(config.dedupe.key)),
        (("dedupe", "order_by"), config.dedupe.order_by),
        *((("translate", "columns", i), c) for i, c in enumerate(config.translate.columns)),
        (("source", "chunk_key"), config.source.chunk_key),
    ]
    for loc, column in references:
        if column is not None and column not in names:
            return field_error(loc, f"{column!r} is not among columns {names}")
    return None


def _key_sanitizers(config: EntityConfig) -> PydanticCustomError | None:
    """Key columns take no sanitizer: dedupe (on staged values) and the target would see different keys."""
    for i, column in enumerate(config.columns):
        if column.name not in config.dedupe.key or not column.sanitize:
            continue
        if "null_if_empty" in column.sanitize:
            return field_error(
                ("columns", i, "sanitize"),
                f"{column.name!r} is a dedupe.key column: null_if_empty would turn an empty key into NULL, "
                "which is no key at all; key columns take no sanitizers (clean the key in the extract query)",
            )
        return field_error(
            ("columns", i, "sanitize"),
            f"{column.name!r} is a dedupe.key column and takes no sanitizers {list(column.sanitize)}: dedupe "
            "compares the staged values, the target the sanitized ones, so they would disagree on what one key "
            "is (clean the key in the extract query)",
        )
    return None


def _staging_is_target(staging: str, target: str) -> PydanticCustomError | None:
    if same_table(staging, target):
        return field_error(
            ("staging", "table"),
            f"{staging!r} is the target.table {target!r} (names compare ignoring case, quotes and a schema "
            "prefix): cleanup drops the staging table",
        )
    return None
