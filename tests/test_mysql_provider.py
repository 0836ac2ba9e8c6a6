"""The Airflow side reaches MySQL through apache-airflow-providers-mysql's ``MySqlHook``.

The NPS DAG's reporting table (``survey_nps_daily`` ``compute_day`` / ``publish_files``) is opened by
``entity_etl.orchestration.db_hooks.open_airflow_database``: a ``mysql`` connection, as the Airflow
UI's form makes it, connects through ``MySqlHook.get_conn()``. Against the session's real MariaDB.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entity_etl.nps import job
from entity_etl.nps.settings import NpsSettings
from entity_etl.orchestration.db_hooks import HookMySQLDatabase, open_airflow_database
from entity_etl.runtime.databases import SqliteDatabase
from support.servers import MariaDB

pytestmark = pytest.mark.mariadb

DAY = dt.date(2026, 11, 10)
ANSWERS = [
    {"contact_id": "c1", "rating": 5, "queue": "Sales", "agent": "zoë 🎧"},
    {"contact_id": "c2", "rating": 4, "queue": "Sales", "agent": "zoë 🎧"},
    {"contact_id": "c3", "rating": 1, "queue": "Support", "agent": "bob"},
]


def reader(table: str, day: dt.date, *, client: Any = None) -> Iterator[dict[str, Any]]:
    assert day == DAY
    return iter(ANSWERS)


def ui_connection(mariadb: MariaDB, database: str, **extra: Any) -> str:
    """A ``mysql`` connection as the provider's form stores it (its extras as a JSON string)."""
    return json.dumps(
        {
            "conn_type": "mysql",
            "host": "127.0.0.1",
            "port": mariadb.port,
            "login": "root",
            "schema": database,
            "extra": json.dumps({"unix_socket": mariadb.socket, **extra}),
        }
    )


def settings(tmp_path: Path) -> NpsSettings:
    return NpsSettings.from_lookup({"NPS_OBJECT_STORE_URL": str(tmp_path / "objects"), "NPS_TREND_DAYS": "7"}.get)


def test_the_reporting_table_is_written_and_read_through_mysqlhook(
    mariadb: MariaDB, mariadb_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    # charset utf8 in the form: the reporting table still gets utf8mb4 (the agent's emoji survives).
    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_REPORTING", ui_connection(mariadb, mariadb_db, charset="utf8"))
    opened: list[Any] = []
    real_get_conn = MySqlHook.get_conn

    def get_conn(hook: MySqlHook) -> Any:
        opened.append(hook.mysql_conn_id)
        return real_get_conn(hook)

    monkeypatch.setattr(MySqlHook, "get_conn", get_conn)
    db = open_airflow_database("survey_reporting")
    assert isinstance(db, HookMySQLDatabase) and isinstance(db.hook, MySqlHook)

    summary = job.compute_day(
        day=DAY, settings=settings(tmp_path), timezone="UTC", opener=open_airflow_database, reader=reader
    )
    files = job.publish_day(day=DAY, settings=settings(tmp_path), opener=open_airflow_database)
    assert opened == ["survey_reporting", "survey_reporting"]  # one connection per step, each the hook's
    assert (summary["responses"], summary["rows"]) == (3, 5)

    conn = mariadb.connect(mariadb_db)
    with conn.cursor() as cursor:
        cursor.execute("SELECT dimension, dimension_key, responses FROM survey_nps_daily ORDER BY 1, 2")
        rows = cursor.fetchall()
    conn.close()
    assert sorted(rows) == [
        ("agent", "bob", 1),
        ("agent", "zoë 🎧", 2),
        ("overall", "", 3),
        ("queue", "Sales", 2),
        ("queue", "Support", 1),
    ]
    csv = Path(files["csv"]).read_text(encoding="utf-8")
    assert "2026-11-10,agent,zoë 🎧,2," in csv


def test_the_ui_test_button_works_on_such_a_connection(
    mariadb: MariaDB, mariadb_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.mysql.hooks.mysql import MySqlHook

    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_REPORTING", ui_connection(mariadb, mariadb_db))
    ok, message = MySqlHook(mysql_conn_id="survey_reporting").test_connection()
    assert ok, message


def test_a_refused_login_names_the_day_and_the_connection_and_never_the_password(
    mariadb: MariaDB, mariadb_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Pa55"
    conn = json.loads(ui_connection(mariadb, mariadb_db))
    conn |= {"login": "no_such_user", "password": secret, "extra": json.dumps({})}  # over TCP: a real login
    monkeypatch.setenv("AIRFLOW_CONN_SURVEY_REPORTING", json.dumps(conn))
    with pytest.raises(job.NpsJobError) as error:
        job.compute_day(
            day=DAY, settings=settings(tmp_path), timezone="UTC", opener=open_airflow_database, reader=reader
        )
    message = str(error.value)
    assert message.startswith("2026-11-10: cannot connect to survey_reporting (mysql 127.0.0.1:")
    assert "(MySqlHook)" in message and "Access denied" in message
    assert secret not in message


def test_a_missing_connection_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(job.NpsJobError) as error:
        job.compute_day(
            day=DAY, settings=settings(tmp_path), timezone="UTC", opener=open_airflow_database, reader=reader
        )
    assert str(error.value).startswith("2026-11-10: the reporting connection 'survey_reporting' cannot be resolved:")


def test_a_sqlite_connection_opens_as_the_runtime_opens_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SURVEY_REPORTING", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "r.db")})
    )
    assert isinstance(open_airflow_database("survey_reporting"), SqliteDatabase)
    summary = job.compute_day(
        day=DAY, settings=settings(tmp_path), timezone="UTC", opener=open_airflow_database, reader=reader
    )
    assert summary["rows"] == 5
