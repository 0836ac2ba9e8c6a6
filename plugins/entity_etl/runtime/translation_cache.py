"""The translation cache's insert, which takes concurrent writers of the same text."""

from __future__ import annotations

from entity_etl.runtime.databases import Database

COLUMNS = ("source_language", "target_language", "source_hash", "source_text", "translated_text")


def insert_sql(db: Database, cache: str) -> str:
    """``INSERT`` of one cache row that leaves a row another writer inserted first for the same key
    (same languages and source hash, hence the same text) as it is, instead of failing."""
    q, p = db.quote, db.placeholder()
    cols = ", ".join(q(c) for c in COLUMNS)
    values = ", ".join([p] * len(COLUMNS))
    sql = f"INSERT INTO {db.table(cache)} ({cols}) VALUES ({values})"
    if db.dialect == "mysql":
        # Not INSERT IGNORE, which would also hide a truncated or invalid value.
        return f"{sql} ON DUPLICATE KEY UPDATE {q('source_hash')} = {q('source_hash')}"
    return f"{sql} ON CONFLICT DO NOTHING"
