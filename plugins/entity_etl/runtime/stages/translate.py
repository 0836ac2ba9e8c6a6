"""translate: the distinct values of the configured columns, via a cache table, in place."""

from __future__ import annotations

from typing import Any

from entity_etl.config.model import EntityConfig
from entity_etl.runtime import failpoints, fencing, staging_ledger, translation_cache
from entity_etl.runtime.databases import Database, sha256_hex
from entity_etl.runtime.stages.context import (
    TRANSLATION_CACHE_TABLE,
    Attempt,
    RunContext,
    count_rows,
    previous_stats,
)
from entity_etl.runtime.translators import Translator


def translate(ctx: RunContext, attempt: Attempt) -> dict[str, Any]:
    config = ctx.config
    tcfg = config.translate
    if not tcfg.enabled:
        return {"details": {"skipped": "translate is not enabled for this entity"}}
    loaded = previous_stats(ctx, "load_staging")
    load_id = (loaded or {}).get("details", {}).get("load_id")
    with ctx.connect(config.target.conn_id) as db:
        staging_ledger.ensure_ledger(db)
        owner = staging_ledger.require_staging(db, config)
        if owner.translated:
            # Staging already holds translated values for this load: translating English text again
            # "from" the source language would be wrong, so a rerun is a no-op.
            done = previous_stats(ctx, "translate") or {"rows_in": 0, "rows_out": 0, "details": {}}
            return {
                **{k: done[k] for k in ("rows_in", "rows_out")},
                "details": {**done["details"], "load_seq": owner.load_seq, "rerun": "no-op"},
            }
        return _translate(ctx, attempt, db, owner.load_seq, load_id)


def _translate(ctx: RunContext, attempt: Attempt, db: Database, load_seq: int, load_id: str | None) -> dict[str, Any]:
    config = ctx.config
    tcfg = config.translate
    translator = ctx.translator_factory()
    _ensure_cache(db)
    rows_in = count_rows(db, config.staging.table)
    counts = {"distinct_values": 0, "cache_hits": 0, "calls": 0, "untranslated": 0}
    for column in tcfg.columns:
        _cache_column(ctx, db, translator, column, counts)
    updated = _apply_translations(db, config)
    staging_ledger.mark(db, config, "translated_seq", load_seq)
    fencing.check(attempt.fence, db)
    db.commit()
    return {
        "rows_in": rows_in,
        "rows_out": updated,
        "details": {
            "translator": translator.label,
            "columns": list(tcfg.columns),
            "distinct_values": counts["distinct_values"],
            "cache_hits": counts["cache_hits"],
            "translated": counts["calls"] - counts["untranslated"],
            "untranslated": counts["untranslated"],
            "load_id": load_id,
            "load_seq": load_seq,
        },
    }


def _ensure_cache(db: Database) -> None:
    """Create the cache table if needed."""
    db.execute(
        db.create_table_sql(
            TRANSLATION_CACHE_TABLE,
            [
                ("source_language", "string(16)"),
                ("target_language", "string(16)"),
                ("source_hash", "string(64)"),
                ("source_text", "text"),
                ("translated_text", "text"),
            ],
            key=["source_language", "target_language", "source_hash"],
        )
    )
    db.commit()


def _cache_column(ctx: RunContext, db: Database, translator: Translator, column: str, counts: dict[str, int]) -> None:
    """Translate the distinct values of one staging column that the cache lacks, into the cache."""
    config = ctx.config
    src, tgt = config.translate.source_language, config.translate.target_language
    q, p, cache = db.quote, db.placeholder(), TRANSLATION_CACHE_TABLE
    staging = db.table(config.staging.table)
    col = q(column)
    last: str | None = None
    # Keyset pages over the distinct values: memory stays bounded however many there are.
    while True:
        where = f"{col} IS NOT NULL" + (f" AND {col} > {p}" if last is not None else "")
        page = [
            r[0]
            for r in db.query(
                f"SELECT DISTINCT {col} FROM {staging} WHERE {where} ORDER BY {col} LIMIT {ctx.translate_page}",
                [last] if last is not None else None,
            )
        ]
        if not page:
            return
        last = page[-1]
        counts["distinct_values"] += len(page)
        hashes = {sha256_hex(v): v for v in page}
        marks = ", ".join([p] * len(hashes))
        known = {
            r[0]
            for r in db.query(
                f"SELECT {q('source_hash')} FROM {q(cache)} WHERE {q('source_language')} = {p} "
                f"AND {q('target_language')} = {p} AND {q('source_hash')} IN ({marks})",
                [src, tgt, *hashes],
            )
        }
        counts["cache_hits"] += len(known)
        todo = [v for h, v in hashes.items() if h not in known]
        if not todo:
            continue
        counts["calls"] += len(todo)
        results = translator.translate_batch(todo, src, tgt)
        rows = []
        for original, result in zip(todo, results, strict=True):
            if result is None:
                counts["untranslated"] += 1
                result = original
            rows.append((src, tgt, sha256_hex(original), original, result))
        # Another run may have cached the same text since the read above: its row stays.
        insert = translation_cache.insert_sql(db, cache)
        for row in rows:
            db.execute(insert, row)
        db.commit()


def _apply_translations(db: Database, config: EntityConfig) -> int:
    """Replace every staged value by its cached translation; left uncommitted for the caller."""
    src, tgt = config.translate.source_language, config.translate.target_language
    q, p, cache = db.quote, db.placeholder(), TRANSLATION_CACHE_TABLE
    staging = db.table(config.staging.table)
    updated = 0
    for column in config.translate.columns:
        col = q(column)
        source_hash = db.sha256_sql(col)  # the SQL of sha256_hex, as the cache keys a text
        # One set-based pass per column replaces every value by its cached translation, after all
        # the reads (translated values never feed back into the pages above), and all columns in
        # one transaction: a crash between two columns leaves none translated, so a rerun never
        # translates a column's English values again "from" the source language.
        updated += db.execute(
            f"UPDATE {staging} SET {col} = (SELECT c.{q('translated_text')} FROM {q(cache)} c "
            f"WHERE c.{q('source_language')} = {p} AND c.{q('target_language')} = {p} "
            f"AND c.{q('source_hash')} = {source_hash}) "
            f"WHERE {col} IS NOT NULL AND EXISTS (SELECT 1 FROM {q(cache)} c "
            f"WHERE c.{q('source_language')} = {p} AND c.{q('target_language')} = {p} "
            f"AND c.{q('source_hash')} = {source_hash} AND c.{q('translated_text')} <> {db.collate(col)})",
            [src, tgt, src, tgt],
        )
        failpoints.hit("translate.column_updated")  # this column updated, nothing committed yet
    return updated
