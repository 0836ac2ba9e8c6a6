"""The target under backfills, keys that differ only in spaces, tables the upsert cannot use, and
translation reruns: on SQLite and on MariaDB (tests/support/servers.py)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from entity_etl.runtime import failpoints
from entity_etl.runtime.databases import server_collation
from entity_etl.runtime.stages import TRANSLATION_CACHE_TABLE, RunContext, StageError, run_stage
from entity_etl.runtime.translators import Translator
from support.kv_entity import DAY_A, DAY_B, Backend, Row, backend, include_for, run, ts
from support.pipeline import context, run_all
from support.servers import MariaDB

__all__ = ["backend"]  # the fixture, imported for its tests

# -- monotonic target --------------------------------------------------------------------------------
# (key, version in interval B, version in interval A): B is loaded first, then A as a backfill.
VERSIONS: list[tuple[str, int | None, int | None]] = [
    ("K1", 5, 3),  # A older
    ("K2", 5, 5),  # tie
    ("K3", None, 3),  # B NULL
    ("K4", 5, None),  # A NULL
    ("K5", None, None),  # both NULL: a tie
    ("K6", 2, 7),  # A newer
]


FILLER = 2100


def _sort_key(v: int | None) -> tuple[bool, int]:
    return (v is not None, v or 0)  # NULL is the smallest value


def expected_after_backfill(keep: str) -> tuple[dict[str, tuple[Any, ...]], int]:
    """The target after B then A, from the documented rule (independent of the SQL), and the kept count."""
    out: dict[str, tuple[Any, ...]] = {}
    kept = 0
    for key, vb, va in VERSIONS:
        a_wins = _sort_key(va) >= _sort_key(vb) if keep == "newest" else _sort_key(va) < _sort_key(vb)
        kept += not a_wins
        out[key] = ("from A", va, None, None) if a_wins else ("from B", vb, None, None)
    out["K7"] = ("from A", 1, None, None)  # only in A: inserted
    return out, kept


@pytest.mark.parametrize("keep", ["newest", "oldest"])
def test_backfill_of_an_older_interval_never_regresses_the_target(keep: str, backend: Backend, tmp_path: Path) -> None:
    include = include_for(tmp_path, keep)
    rows: list[Row] = []
    for i, (key, vb, va) in enumerate(VERSIONS):
        rows.append((key, "from B", vb, None, None, ts(DAY_B, i)))
        rows.append((key, "from A", va, None, None, ts(DAY_A, i)))
    rows.append(("K7", "from A", 1, None, None, ts(DAY_A, 30)))
    # New keys only in A, between K3 and K4 in key order: the backfill's upsert takes three chunks.
    rows += [(f"K3-{i:04d}", "filler", 1, None, None, ts(DAY_A, 40)) for i in range(FILLER)]
    backend.add_source(rows)

    first = run(include, tmp_path, DAY_B, "rB")
    assert backend.target() == {k: ("from B", vb, None, None) for k, vb, _ in VERSIONS}
    assert first["load_target"].details[f"kept_{'newer' if keep == 'newest' else 'older'}"] == 0

    second = run(include, tmp_path, DAY_A, "rA")
    expected, kept = expected_after_backfill(keep)
    expected.update({f"K3-{i:04d}": ("filler", 1, None, None) for i in range(FILLER)})
    assert backend.target() == expected
    assert kept == (2 if keep == "newest" else 4)  # the case table above, spelt out
    assert second["load_target"].details[f"kept_{'newer' if keep == 'newest' else 'older'}"] == kept
    assert second["load_target"].details["chunks"] == 3
    assert second["load_target"].rows_out == 7 + FILLER  # every staged row was offered to the upsert


def test_keep_last_backfill_replaces_whatever_its_interval(backend: Backend, tmp_path: Path) -> None:
    include = include_for(tmp_path, "newest")
    text = (include / "entities" / "kv.yaml").read_text().replace("keep: newest, order_by: v", "keep: last")
    (include / "entities" / "kv.yaml").write_text(text)
    backend.add_source([("K1", "from B", 5, None, None, ts(DAY_B, 0)), ("K1", "from A", 3, None, None, ts(DAY_A, 0))])
    run(include, tmp_path, DAY_B, "rB")
    stats = run(include, tmp_path, DAY_A, "rA")
    assert backend.target() == {"K1": ("from A", 3, None, None)}
    assert not any(k.startswith("kept_") for k in stats["load_target"].details)


# -- keys that differ in spaces ---------------------------------------------------------------------
SPACE_KEYS = ["KVK-1", "KVK-1 ", "kvk-1", "", " ", "  "]


def test_keys_that_differ_only_in_trailing_spaces_stay_distinct(backend: Backend, tmp_path: Path) -> None:
    include = include_for(tmp_path)
    rows: list[Row] = []
    for i, key in enumerate(SPACE_KEYS):  # two versions of each key: dedupe keeps the newer
        rows.append((key, f"old {i}", 1, None, None, ts(DAY_A, 2 * i)))
        rows.append((key, f"new {i}", 2, None, None, ts(DAY_A, 2 * i + 1)))
    backend.add_source(rows)
    stats = run(include, tmp_path, DAY_A, "r1")
    assert stats["dedupe"].duplicates_removed == len(SPACE_KEYS)
    assert stats["dedupe"].rows_out == len(SPACE_KEYS)
    assert backend.target() == {key: (f"new {i}", 2, None, None) for i, key in enumerate(SPACE_KEYS)}
    # A second load of the same keys updates each of them, and merges none.
    run(include, tmp_path, DAY_A, "r2")
    assert len(backend.target()) == len(SPACE_KEYS)
    if backend.kind == "mariadb":
        collations = backend.sql(
            "SELECT TABLE_NAME, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND COLUMN_NAME IN ('id', 'company_id', 'source_hash')"
        )
        assert {(t, c) for t, c in collations} >= {
            ("kv_company", "utf8mb4_nopad_bin"),
            ("stg_kv", "utf8mb4_nopad_bin"),
        }


def test_server_collation_is_no_pad_binary_where_the_server_has_one() -> None:
    assert server_collation("10.11.19-MariaDB-0+deb12u1", "Debian 12") == "utf8mb4_nopad_bin"
    assert server_collation("5.5.5-10.6.16-MariaDB", "") == "utf8mb4_nopad_bin"
    assert server_collation("10.1.48-MariaDB", "mariadb.org binary distribution") == "utf8mb4_bin"
    assert server_collation("8.0.36", "MySQL Community Server - GPL") == "utf8mb4_0900_bin"
    assert server_collation("8.4.3", "Source distribution") == "utf8mb4_0900_bin"
    assert server_collation("5.7.44-log", "MySQL Community Server (GPL)") == "utf8mb4_bin"


# -- existing target tables the upsert cannot use ---------------------------------------------------
@pytest.mark.mariadb
def test_a_pad_space_target_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mariadb: MariaDB, mariadb_db: str
) -> None:
    backend = Backend("mariadb", tmp_path, monkeypatch, mariadb, mariadb_db)
    backend.sql(
        "CREATE TABLE kv_company (company_id VARCHAR(20) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, "
        "label VARCHAR(50), version INT, sector VARCHAR(50), sector2 VARCHAR(50))"
    )
    backend.sql("INSERT INTO kv_company VALUES ('KVK-1', 'before', 9, NULL, NULL)")
    backend.add_source([("KVK-1 ", "x", 1, None, None, ts(DAY_A, 0)), ("KVK-2", "y", 1, None, None, ts(DAY_A, 1))])
    include = include_for(tmp_path)
    ctx = context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)
    with pytest.raises(StageError) as err:
        run_all(ctx)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("kv: load_target: target table kv_company")
    assert "company_id (utf8mb4_bin) use a PAD SPACE collation" in message
    assert "ALTER TABLE kv_company MODIFY company_id varchar(20) COLLATE utf8mb4_nopad_bin NOT NULL" in message
    assert backend.target() == {"KVK-1": ("before", 9, None, None)}

    # The fix the message gives works: the next run loads both keys, distinct from 'KVK-1'.
    backend.sql("ALTER TABLE kv_company MODIFY company_id varchar(20) COLLATE utf8mb4_nopad_bin NOT NULL")
    run_stage(ctx, "load_target")
    assert backend.target() == {
        "KVK-1": ("before", 9, None, None),
        "KVK-1 ": ("x", 1, None, None),
        "KVK-2": ("y", 1, None, None),
    }


@pytest.mark.parametrize(
    "primary_key", ["PRIMARY KEY (company_id, label)", "PRIMARY KEY (label)", ""], ids=["wider", "other", "none"]
)
def test_a_target_whose_primary_key_is_not_the_dedupe_key_is_refused(
    primary_key: str, backend: Backend, tmp_path: Path
) -> None:
    backend.sql(
        "CREATE TABLE kv_company (company_id VARCHAR(20) NOT NULL, label VARCHAR(50) NOT NULL, version INT, "
        f"sector VARCHAR(50), sector2 VARCHAR(50){', ' + primary_key if primary_key else ''})"
    )
    backend.sql("INSERT INTO kv_company VALUES ('K1', 'before', 9, NULL, NULL)")
    backend.add_source([("K1", "x", 10, None, None, ts(DAY_A, 0))])
    with pytest.raises(
        StageError,
        match=r"^kv: load_target: target table kv_company has the primary key .*"
        r"not \['company_id'\] .*nothing was written$",
    ):
        run(include_for(tmp_path), tmp_path, DAY_A, "r1")
    assert backend.target() == {"K1": ("before", 9, None, None)}


def test_a_sqlite_target_whose_key_ignores_trailing_spaces_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = Backend("sqlite", tmp_path, monkeypatch)
    backend.sql(
        "CREATE TABLE kv_company (company_id TEXT COLLATE RTRIM NOT NULL PRIMARY KEY, label TEXT, version INT, "
        "sector TEXT, sector2 TEXT)"
    )
    backend.sql("INSERT INTO kv_company VALUES ('KVK-1', 'before', 9, NULL, NULL)")
    backend.add_source([("KVK-1 ", "x", 10, None, None, ts(DAY_A, 0))])
    with pytest.raises(
        StageError, match=r"^kv: load_target: target table kv_company: key columns company_id \(RTRIM\)"
    ):
        run(include_for(tmp_path), tmp_path, DAY_A, "r1")
    assert backend.target() == {"KVK-1": ("before", 9, None, None)}


# -- translation -------------------------------------------------------------------------------------
# A glossary that, like a real translator reading English as German, changes an English value again.
GLOSSARY = {"de": {"Maschinenbau": "Mechanical engineering", "Mechanical engineering": "TRANSLATED TWICE"}}


def _translate_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: Backend) -> RunContext:
    glossary = tmp_path / "glossary.json"
    glossary.write_text(json.dumps(GLOSSARY))
    monkeypatch.setenv("ETL_GLOSSARY", str(glossary))
    monkeypatch.setenv("ETL_TRANSLATOR", "glossary")
    backend.add_source(
        [
            ("K1", "a", 1, "Maschinenbau", "Maschinenbau", ts(DAY_A, 0)),
            ("K2", "b", 1, None, "Maschinenbau", ts(DAY_A, 1)),
        ]
    )
    include = include_for(tmp_path, translate=True)
    return context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)


def test_a_crash_between_two_translated_columns_translates_neither_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = Backend("sqlite", tmp_path, monkeypatch)
    ctx = _translate_setup(tmp_path, monkeypatch, backend)
    for stage in ("cleanup", "extract", "load_staging"):
        run_stage(ctx, stage)
    monkeypatch.setenv(failpoints.ENV, "translate.column_updated=raise@1")  # after the first column
    failpoints.reload()
    try:
        with pytest.raises((failpoints.InjectedFault, StageError), match=r"translate\.column_updated"):
            run_stage(ctx, "translate")
    finally:
        monkeypatch.delenv(failpoints.ENV)
        failpoints.reload()
    staged = backend.sql("SELECT id, sector, sector2 FROM stg_kv ORDER BY id")
    assert staged == [("K1", "Maschinenbau", "Maschinenbau"), ("K2", None, "Maschinenbau")]  # none committed
    for stage in ("translate", "dedupe", "load_target"):
        run_stage(ctx, stage)
    once = "Mechanical engineering"
    assert backend.target() == {"K1": ("a", 1, once, once), "K2": ("b", 1, None, once)}


class _RacingTranslator(Translator):
    """Translates, and meanwhile another writer caches the same texts (committed) before this run's insert."""

    label = "racing"

    def __init__(self, other_writer: Callable[[list[str]], None]) -> None:
        self.other_writer = other_writer

    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str | None]:
        self.other_writer(list(texts))
        return [GLOSSARY["de"].get(t) for t in texts]


def test_two_writers_of_the_same_cache_row_do_not_fail(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    ctx = _translate_setup(tmp_path, monkeypatch, backend)
    if backend.kind == "mariadb":  # a cache table as earlier versions created it, in utf8mb4_bin
        backend.sql(
            f"CREATE TABLE {TRANSLATION_CACHE_TABLE} (source_language VARCHAR(16) NOT NULL, "
            "target_language VARCHAR(16) NOT NULL, source_hash VARCHAR(64) NOT NULL, source_text MEDIUMTEXT, "
            "translated_text MEDIUMTEXT, PRIMARY KEY (source_language, target_language, source_hash)) "
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )

    def other_writer(texts: list[str]) -> None:
        backend.sql(
            f"INSERT INTO {TRANSLATION_CACHE_TABLE} (source_language, target_language, source_hash, source_text, "
            "translated_text) VALUES (%s, %s, %s, %s, %s)",
            [("de", "en", hashlib.sha256(t.encode()).hexdigest(), t, GLOSSARY["de"][t]) for t in texts],
        )

    ctx = dataclasses.replace(ctx, translator_factory=lambda: _RacingTranslator(other_writer))
    stats = run_all(ctx)
    assert stats["translate"].details["translated"] == 1
    cache = backend.sql(f"SELECT source_text, translated_text FROM {TRANSLATION_CACHE_TABLE}")
    assert cache == [("Maschinenbau", "Mechanical engineering")]
    once = "Mechanical engineering"
    assert backend.target() == {"K1": ("a", 1, once, once), "K2": ("b", 1, None, once)}
