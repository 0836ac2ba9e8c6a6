"""A database the tests read and write directly: a SQLite file, or a database on the session's MariaDB."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .servers import MariaDB


class ScratchDb:
    """``kind`` is ``sqlite`` (the file at ``path``) or ``mariadb`` (database ``db`` on ``mariadb``)."""

    def __init__(self, kind: str, path: Path, mariadb: MariaDB | None = None, db: str = "") -> None:
        self.kind, self.path, self.mariadb, self.db = kind, path, mariadb, db

    def conn_json(self) -> str:
        """The Airflow connection (``AIRFLOW_CONN_*`` JSON) the stages reach this database with."""
        if self.kind == "mariadb":
            assert self.mariadb is not None
            return self.mariadb.conn_json(self.db)
        return json.dumps({"conn_type": "sqlite", "host": str(self.path)})

    def connect(self) -> Any:
        if self.kind == "mariadb":
            assert self.mariadb is not None
            return self.mariadb.connect(self.db)
        return sqlite3.connect(self.path)

    def sql(self, statement: str, rows: Sequence[Sequence[Any]] | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (``%s`` placeholders; ``rows``: executemany), commit, and return what it fetched."""
        if self.kind == "sqlite":
            statement = statement.replace("%s", "?")
        conn = self.connect()
        try:
            cur = conn.cursor()
            if rows is not None:
                cur.executemany(statement, rows)
            else:
                cur.execute(statement)
            result = list(cur.fetchall()) if cur.description else []
            conn.commit()
            return result
        finally:
            conn.close()
