"""Load the demo's generated sources (``demo/sources.py``, the same rows as ``make demo``) into MySQL.

docker-compose's ``airflow-init`` runs it once, so ``etl_de``/``etl_jp``/``etl_br`` read MySQL 8 there.
Each SQLite table becomes a MySQL table of TEXT columns (the extract queries compare ISO timestamps as
text, as on SQLite) in the database of the ``<ENTITY>_SOURCE`` connection; reruns replace the tables.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo.sources import make_all  # noqa: E402

from entity_etl.runtime.connections import resolve_connection  # noqa: E402
from entity_etl.runtime.databases import open_database  # noqa: E402


def load(conn_ids: dict[str, str], rows: int = 4000) -> dict[str, int]:
    loaded: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for entity, path in make_all(Path(scratch), rows).items():
            db = open_database(resolve_connection(conn_ids[entity]))
            with db, sqlite3.connect(path) as src:
                for (table,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    cursor = src.execute(f'SELECT * FROM "{table}"')
                    columns = [d[0] for d in cursor.description]
                    db.execute(f"DROP TABLE IF EXISTS {db.quote(table)}")
                    db.execute(
                        f"CREATE TABLE {db.quote(table)} (" + ", ".join(f"{db.quote(c)} TEXT" for c in columns) + ")"
                    )
                    insert = f"INSERT INTO {db.quote(table)} VALUES ({', '.join([db.placeholder()] * len(columns))})"
                    count = 0
                    while batch := cursor.fetchmany(1000):
                        for row in batch:
                            db.execute(insert, [None if v is None else str(v) for v in row])
                        count += len(batch)
                    db.commit()
                    loaded[f"{entity}.{table}"] = count
    return loaded


if __name__ == "__main__":
    for name, count in load({e: f"{e}_source" for e in ("de", "jp", "br")}).items():
        print(f"load_demo_sources: {name}: {count} rows")
