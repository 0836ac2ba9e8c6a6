"""Entity configuration: strict schema, loading, validation. No Airflow, no DB, no network."""

from entity_etl.config.loader import ConfigProblem, EntityConfigError, LoadResult, load_entities, load_entity
from entity_etl.config.model import EntityConfig

__all__ = [
    "ConfigProblem",
    "EntityConfig",
    "EntityConfigError",
    "LoadResult",
    "load_entities",
    "load_entity",
]
