"""What load_target checks of an existing target table, and the guard that keeps it monotonic.

* The primary key must be the target columns of ``dedupe.key``: the upsert's conflict target.
* On MySQL/MariaDB the key columns must use a NO PAD collation; under PAD SPACE ``'KVK-1'`` and
  ``'KVK-1 '`` are one key and the upsert would merge them.
* With ``keep: newest``/``oldest`` the upsert replaces a row only where :func:`databases.replaces` says
  so, and :func:`kept_sql` counts the staged rows it will keep out, before each chunk's upsert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from entity_etl.config.model import EntityConfig
from entity_etl.runtime.databases import Database, replaces


class TargetTableError(RuntimeError):
    """The existing target table cannot take this entity's upsert as it is."""


def guard(config: EntityConfig) -> tuple[str, str] | None:
    """(target column of ``order_by``, keep) when the target must stay monotonic, else None."""
    d = config.dedupe
    if d.keep in ("newest", "oldest") and d.order_by:
        return config.column(d.order_by).target_name, d.keep
    return None


def kept_sql(
    db: Database,
    config: EntityConfig,
    staging_expr: Callable[[str], str],
    where: str,
) -> str:
    """``SELECT COUNT(*)`` of the staged rows (``where`` over staging) whose key is in the target with
    an ``order_by`` value the incoming one does not replace. ``staging_expr`` gives a staging column's
    sanitized expression, qualified by ``s``."""
    q = db.quote
    g = guard(config)
    assert g is not None

    def staged(name: str) -> str:
        # A text column of an existing target may use another NO PAD collation than staging's.
        text = config.column(name).type.split("(")[0] in ("string", "text")
        return db.collate(staging_expr(name)) if text else staging_expr(name)

    on = " AND ".join(f"t.{q(config.column(k).target_name)} = {staged(k)}" for k in config.dedupe.key)
    incoming = staged(config.dedupe.order_by or "")
    cond = replaces(incoming, f"t.{q(g[0])}", g[1])
    return (
        f"SELECT COUNT(*) FROM {db.table(config.staging.table)} s JOIN {db.table(config.target.table)} t "
        f"ON {on} WHERE {where} AND NOT {cond}"
    )


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return schema or None, name


def primary_key(db: Database, table: str) -> list[str]:
    return db.primary_key(*_split(table))


def padded_key_columns(db: Database, table: str, columns: Sequence[str]) -> list[tuple[str, str, str]]:
    """(column, type, collation) of the ``columns`` of ``table`` that compare with PAD SPACE."""
    return db.padded_key_columns(*_split(table), columns)


def check_target(db: Database, config: EntityConfig) -> None:
    """Refuse an existing target table whose primary key or key collation would merge or miss keys."""
    table = config.target.table
    key = [config.column(k).target_name for k in config.dedupe.key]
    pk = primary_key(db, table)
    where = f"{config.entity}: load_target: target table {table}"
    if [c.lower() for c in sorted(pk)] != [c.lower() for c in sorted(key)]:
        raise TargetTableError(
            f"{where} has the primary key {pk or 'none'}, not {key} (the target columns of dedupe.key): "
            f"the upsert needs exactly that key; change it (e.g. ALTER TABLE {table} DROP PRIMARY KEY, "
            f"ADD PRIMARY KEY ({', '.join(key)})) or dedupe.key; nothing was written"
        )
    padded = padded_key_columns(db, table, key)
    if padded:
        names = ", ".join(f"{c} ({coll})" for c, _, coll in padded)
        raise TargetTableError(f"{where}: key columns {names} {db.padded_key_problem(table, padded)}")


def count_kept(db: Database, sql: str, params: Sequence[object]) -> int:
    """Run :func:`kept_sql` in the transaction of the upsert that follows."""
    db.begin()
    return int(db.query(sql, list(params))[0][0])
