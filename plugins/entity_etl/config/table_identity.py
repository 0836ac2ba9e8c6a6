"""When two table names are one table: the staging table must never be a target table.

``cleanup`` drops and recreates an entity's staging table, so a staging table that is (in any spelling)
its own target, another entity's target, or another entity's staging table destroys data. Names are
compared as the database would resolve them: case-insensitively (MySQL on Windows/macOS, SQLite and
MariaDB's ``lower_case_table_names``), without quoting, and with a schema prefix matching the default
schema (``main.company_de`` on SQLite, ``<database>.company_de`` on MySQL) when the other name has none.
Pure functions: the loader calls :func:`check_table_identity`, the stage runtime may call :func:`same_table`
(defined with :func:`normalised_table` in ``identifiers``, which the model uses for one file's own pair).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from entity_etl.config.identifiers import normalised_table, same_normalised, same_table
from entity_etl.config.model import EntityConfig
from entity_etl.config.problems import ConfigProblem

__all__ = ["TableClash", "check_table_identity", "normalised_table", "same_table", "table_clashes"]


@dataclass(frozen=True)
class _Use:
    file: str
    field: str  # "staging.table" or "target.table"
    name: str
    normalised: tuple[str | None, str]


def _uses(configs: Iterable[tuple[str, EntityConfig]]) -> dict[tuple[str, str], list[_Use]]:
    """Every staging and target table, grouped by (target conn_id, normalised table part)."""
    groups: dict[tuple[str, str], list[_Use]] = defaultdict(list)
    for file, config in configs:
        for field, name in (("staging.table", config.staging.table), ("target.table", config.target.table)):
            normalised = normalised_table(name)
            groups[(config.target.conn_id, normalised[1])].append(_Use(file, field, name, normalised))
    return groups


@dataclass(frozen=True)
class TableClash:
    """``file``'s staging table ``name`` is also ``other_field`` of ``other_file``."""

    file: str
    name: str
    other_file: str
    other_field: str

    @property
    def problem(self) -> ConfigProblem:
        return ConfigProblem(
            self.file, "staging.table", f"{self.name!r} is also the {self.other_field} of {self.other_file}"
        )


def table_clashes(configs: Iterable[tuple[str, EntityConfig]]) -> list[TableClash]:
    """Every staging table that is another entity file's staging or target table.

    ``configs`` are ``(file, config)`` pairs. Only tables on the same target ``conn_id`` are compared
    (the staging table lives on the target connection). A file's own staging/target pair is the
    model's check (``EntityConfig``), so it is not repeated here. A shared staging table is one clash,
    under the file that sorts first.
    """
    clashes = []
    for uses in _uses(configs).values():
        for staging in (u for u in uses if u.field == "staging.table"):
            for other in uses:
                if other.file == staging.file or not same_normalised(staging.normalised, other.normalised):
                    continue
                if other.field == "staging.table" and other.file < staging.file:
                    continue
                clashes.append(TableClash(staging.file, staging.name, other.file, other.field))
    return clashes


def check_table_identity(configs: Iterable[tuple[str, EntityConfig]]) -> list[ConfigProblem]:
    """:func:`table_clashes` as ``file: staging.table: message`` problems."""
    return [clash.problem for clash in table_clashes(configs)]
