"""load_staging reads each part as a stream (``gzip_parts.part_reader`` into ``Database.load_csv_stream``,
a FIFO on MariaDB): a part damaged part way is one line naming it, and what it had loaded is rolled
back, so staging never holds half a part. On SQLite and MariaDB (tests/support/kv_entity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entity_etl.runtime.run_store import open_run_store
from entity_etl.runtime.stages import StageError, run_stage
from support.entity_files import make_include, write_entity
from support.kv_entity import DAY_A, DAY_B, ENTITY, SQL, Backend, backend, ts
from support.pipeline import context

__all__ = ["backend"]  # the SQLite / MariaDB fixture of kv_entity.py

# 2,500 rows in chunks of 1,000: three parts.
ROWS = [(f"K{i:04d}", f'label {i} "odd", line\nbreak', i, "s", None, ts(DAY_A, i // 2)) for i in range(2500)]


@pytest.mark.parametrize("damage", ["truncated", "bad-crc"])
def test_a_part_damaged_part_way_loads_none_of_its_rows(backend: Backend, tmp_path: Path, damage: str) -> None:
    include = make_include(tmp_path)
    write_entity(include, "kv", ENTITY.format(keep="newest", translate="false"), SQL)
    backend.add_source(ROWS)

    ctx = context(include, "kv", tmp_path / "store", run_id="r1", start=DAY_A, end=DAY_B)
    run_stage(ctx, "cleanup")
    run_stage(ctx, "extract")
    manifest = json.loads(next((tmp_path / "store").rglob("_manifest.json")).read_bytes())
    assert [p["rows"] for p in manifest["parts"]] == [1000, 1000, 500]
    part = next((tmp_path / "store").rglob("part-000001.csv.gz"))
    whole = part.read_bytes()
    if damage == "truncated":  # past the first records: the stream fails after the load has started
        part.write_bytes(whole[: len(whole) * 3 // 4])
    else:  # every byte decompresses; the trailer's CRC-32 does not match
        part.write_bytes(whole[:-8] + bytes(b ^ 0xFF for b in whole[-8:-4]) + whole[-4:])

    with pytest.raises(StageError) as failure:
        run_stage(ctx, "load_staging")
    message = str(failure.value)
    assert message.startswith(f"kv: load_staging: {manifest['parts'][1]['uri']} is not a readable gzip part (")
    assert message.endswith("); rerun the extract") and "\n" not in message
    # Part 0 committed and checkpointed; none of part 1's rows stayed.
    assert backend.sql("SELECT COUNT(*), MIN(id), MAX(id) FROM stg_kv") == [(1000, "K0000", "K0999")]
    store = open_run_store()
    assert store is not None
    assert [c.chunk for c in store.checkpoints("kv", "r1", "load_staging")] == ["000000"]

    part.write_bytes(whole)  # the part restored (as a rerun of the extract would write it): the rest loads
    stats = run_stage(ctx, "load_staging")
    assert stats.rows_out == 2500 and stats.details["resumed_parts"] == 1
    assert backend.sql("SELECT COUNT(*), COUNT(DISTINCT id) FROM stg_kv") == [(2500, 2500)]
    assert backend.sql("SELECT val FROM stg_kv WHERE id = 'K1234'") == [('label 1234 "odd", line\nbreak',)]
