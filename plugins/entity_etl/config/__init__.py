"""Entity configuration: strict schema, loading, validation. No Airflow, no DB, no network."""

from entity_etl.config.loader import LoadResult, load_entities, load_entity
from entity_etl.config.model import EntityConfig
from entity_etl.config.problems import ConfigProblem, EntityConfigError
from entity_etl.config.table_identity import check_table_identity, normalised_table, same_table

__all__ = [
    "ConfigProblem",
    "EntityConfig",
    "EntityConfigError",
    "LoadResult",
    "check_table_identity",
    "load_entities",
    "load_entity",
    "normalised_table",
    "same_table",
]
