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
    schema, name = _split(table)
    if db.dialect == "sqlite":
        prefix = f"{db.quote(schema)}." if schema else ""
        rows = db.query(f"PRAGMA {prefix}table_info({db.quote(name)})")
        return [str(r[1]) for r in sorted((r for r in rows if r[5]), key=lambda r: r[5])]
    rows = db.query(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) "
        "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        [schema, name],
    )
    return [r[0].decode() if isinstance(r[0], bytes) else str(r[0]) for r in rows]


def _no_pad(db: Database, collation: str) -> bool:
    lowered = collation.lower()
    if "_nopad_" in lowered or "_0900_" in lowered or lowered == "binary":
        return True
    try:  # MySQL 8 says so itself; MariaDB's COLLATIONS table has no PAD_ATTRIBUTE
        rows = db.query(
            "SELECT PAD_ATTRIBUTE FROM information_schema.COLLATIONS WHERE COLLATION_NAME = %s", [collation]
        )
    except Exception:
        db.rollback()
        return False
    return bool(rows) and str(rows[0][0]).upper() == "NO PAD"


def padded_key_columns(db: Database, table: str, columns: Sequence[str]) -> list[tuple[str, str, str]]:
    """(column, type, collation) of the ``columns`` of ``table`` that compare with PAD SPACE."""
    schema, name = _split(table)
    if db.dialect == "sqlite":
        # Text compares byte by byte unless a column or the key's index says otherwise (RTRIM pads).
        prefix = f"{db.quote(schema)}." if schema else ""
        padded = []
        types = {str(r[1]): str(r[2]) for r in db.query(f"PRAGMA {prefix}table_info({db.quote(name)})")}
        for index in db.query(f"PRAGMA {prefix}index_list({db.quote(name)})"):
            if index[3] != "pk":
                continue
            for info in db.query(f"PRAGMA {prefix}index_xinfo({db.quote(str(index[1]))})"):
                if info[5] and info[2] in columns and str(info[4]).upper() != "BINARY":
                    padded.append((str(info[2]), types.get(str(info[2]), ""), str(info[4])))
        return padded
    rows = db.query(
        "SELECT COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
        [schema, name],
    )

    def text(value: object) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    padded = []
    for column, ctype, collation in rows:
        if text(column) in columns and collation is not None and not _no_pad(db, text(collation)):
            padded.append((text(column), text(ctype), text(collation)))
    return padded


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
    if padded and db.dialect == "sqlite":
        names = ", ".join(f"{c} ({coll})" for c, _, coll in padded)
        raise TargetTableError(
            f"{where}: key columns {names} do not compare byte by byte, so distinct keys can be one key; "
            f"nothing was written. Fix: recreate {table} with the key columns in the BINARY collation"
        )
    if padded:
        collation = getattr(db, "collation", "utf8mb4_nopad_bin")
        fixes = "; ".join(f"ALTER TABLE {table} MODIFY {c} {t} COLLATE {collation} NOT NULL" for c, t, _ in padded)
        names = ", ".join(f"{c} ({coll})" for c, _, coll in padded)
        raise TargetTableError(
            f"{where}: key columns {names} use a PAD SPACE collation, under which keys that differ in "
            f"trailing spaces are one key; nothing was written. Fix: {fixes}"
        )


def count_kept(db: Database, sql: str, params: Sequence[object]) -> int:
    """Run :func:`kept_sql` in the transaction of the upsert that follows."""
    db.begin()
    return int(db.query(sql, list(params))[0][0])
