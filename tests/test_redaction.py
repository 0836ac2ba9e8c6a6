"""The one redaction function, connection parsing that never echoes its input, and where both apply."""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from pathlib import Path

import pytest

from entity_etl.runtime.connections import parse_connection
from entity_etl.runtime.databases import MySQLDatabase, open_database
from entity_etl.runtime.redaction import RedactingFilter, redact
from entity_etl.runtime.run_store import SqliteRunStore, StageRecord
from entity_etl.runtime.stages import StageError
from support.entity_files import make_include, write_entity
from support.pipeline import etlctl_run_stage
from support.servers import free_port

SECRET = "s3cr3t"


# -- the function ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql://etl:pa55@h:3306/db", "mysql://***:***@h:3306/db"),
        ("mysql://etl:p/a?s#s@w:rd@db.example.com:3306/x", "mysql://***:***@db.example.com:3306/x"),
        ("uri 'mysql://:only-pw@h/db' failed", "uri 'mysql://***:***@h/db' failed"),
        ("db_password=hunter2; next", "db_password=***; next"),
        ("Password: hunter2", "Password: ***"),
        ("MYSQL_PWD=hunter2", "MYSQL_PWD=***"),
        ('{"client_secret": "a b c", "rows": 5}', '{"client_secret": "***", "rows": 5}'),
        ("{'password': 'x y'}", "{'password': '***'}"),
        ("token=abc123", "token=***"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=***"),
        ("aws_secret_access_key: wJalrXUtnFEMI", "aws_secret_access_key: ***"),
        ("key AKIAIOSFODNN7EXAMPLE and ASIAY34FZKBOKMUTVV7A", "key [aws-key-id] and [aws-key-id]"),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig", "Authorization: Bearer ***"),
        ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic ***"),
        ('{"Authorization": "Bearer abc.def"}', '{"Authorization": "Bearer ***"}'),
        ("sent bearer abc.def-ghi to the API", "sent bearer *** to the API"),
    ],
)
def test_secrets_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent: a record read back and written again stays the same


@pytest.mark.parametrize(
    "phone",
    [
        "+49 30 1234567",
        "+4930 1234567",
        "+4915112345678",
        "+44 20 7946 0958",
        "+1 (202) 555-0143",
        "+49 (0)30 1234567",
        "0049 30 1234567",
        "030 1234567",
        "(030) 123-4567",
        "0151-23456789",
        "030/1234567",
        "4915112345678",
        "12025550143",
    ],
)
def test_phone_numbers_are_masked(phone: str) -> None:
    assert redact(f"Duplicate entry '{phone}' for key 'PRIMARY'") == "Duplicate entry '[number]' for key 'PRIMARY'"
    assert redact(f"call {phone}.") == "call [number]."


@pytest.mark.parametrize(
    "text",
    [
        "loaded 123456789 rows (1,234,567,890 read) in 12.5 s",
        "run scheduled__2026-11-02T00:00:00+00:00 stage extract",
        "at 2026-12-02 13:05:00.123 +01:00, 02-12-2026, 02.12.2026, 01:30:00, +10:00",
        "job 0a1b2c3d-1234-5678-9abc-def012345678 and 01234567-8901-2345-6789-012345678901",
        "arn:aws:batch:eu-west-1:123456789012:job-queue/etl-fargate",
        "sequence 49656953312312473960283418730158219087435362713217302530",
        "pi 3.14159265358 version 1.2.3 id 00012345 exit code 137 attempt 3 of 3",
        "epoch 1764680000 and 1764680000000 ms",
        "chunk 0007 of 0100 offset 0000123",
        "fencing epoch 42, lease ttl 600 s, 5000 duplicates removed",
        "Access denied for user 'etl'@'10.0.0.1' (using password: ***)",
    ],
)
def test_ordinary_text_and_numbers_are_kept(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_linear_on_long_hostile_input() -> None:
    import time

    hostile = ["+" + "1" * 50_000 + "x", "a" * 50_000 + "password", "0" + "12 " * 20_000 + "x", "://" + ":" * 20_000]
    t0 = time.perf_counter()
    for text in hostile:
        redact(text)
    assert time.perf_counter() - t0 < 5


def test_the_log_filter_redacts_message_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connecting to %s", ("mysql://etl:pw@h/db",), None)
    try:
        raise ValueError(f"password={SECRET}")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "mysql://***:***@h/db" in text and "password=***" in text and SECRET not in text


# -- connection parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "password", ["s3/cr3t", "s3?cr3t", "s3#cr3t", "s3@cr3t", "s3:cr3t", "a?b#c@d:e/f", "12/34", "dr:w@s#s?a/p", "x#y@h"]
)
def test_raw_special_characters_in_a_uri_password_parse(password: str) -> None:
    info = parse_connection("tgt", f"mysql://etl:{password}@db.example.com:3307/shop?connect_timeout=5")
    assert (info.host, info.port, info.login, info.password, info.schema) == (
        "db.example.com",
        3307,
        "etl",
        password,
        "shop",
    )
    assert info.extra == {"connect_timeout": "5"}


def test_percent_encoded_passwords_and_extras_still_parse() -> None:
    info = parse_connection(
        "tgt", "mysql://etl:s3%2Fcr%3F3t%23@h/db?__extra__=%7B%22ssl%22%3A+%7B%22ca%22%3A+%22%2Fca.pem%22%7D%7D"
    )
    assert (info.password, info.host, info.port) == ("s3/cr?3t#", "h", None)
    assert info.extra == {"ssl": {"ca": "/ca.pem"}}
    info = parse_connection("tgt", "mysql://etl:pw@host/db?notify=ops@example.com")
    assert (info.host, info.password, info.extra) == ("host", "pw", {"notify": "ops@example.com"})
    assert parse_connection("x", "mysql://etl:x@[::1]:3306/db").host == "::1"
    # A raw "#" then "@" in the password: the server is what follows the last "@" (a port or a path next).
    info = parse_connection("tgt", "mysql://u:dr:w@s#s?a/p@localhost/db")
    assert (info.password, info.host, info.schema) == ("dr:w@s#s?a/p", "localhost", "db")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"mysql://etl:{SECRET}@h:{SECRET}/db", "the URI is not valid (percent-encode special characters"),
        (f"mysql://etl:{SECRET}@h:99x/db", "the URI is not valid"),
        (f"not a uri {SECRET}", "not a URI or JSON object"),
        (f'{{"conn_type": "mysql", "password": "{SECRET}", "port": "{SECRET}"}}', "port is not a number"),
        (f'{{"password": "{SECRET}"', "invalid JSON"),
        (f'{{"conn_type": "mysql", "extra": "{{{SECRET}"}}', "extra is not valid JSON"),
        (f"mysql://etl:pw@h/db?__extra__={SECRET}", "__extra__ is not valid JSON"),
    ],
)
def test_a_bad_connection_is_named_without_its_text(value: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_connection("tgt", value)
    message = str(caught.value)
    assert message.startswith(f"connection 'tgt': {problem}")
    assert SECRET not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None


# -- where it applies -----------------------------------------------------------------------------
def test_stage_errors_and_run_store_errors_are_redacted(tmp_path: Path) -> None:
    error = StageError(f"acme: extract: cannot use mysql://etl:{SECRET}@h/db\n(password={SECRET})")
    assert str(error) == "acme: extract: cannot use mysql://***:***@h/db (password=***)"
    store = SqliteRunStore(tmp_path / "state.db")
    store.put(StageRecord("acme", "r1", "extract", "failed", error=f"Authorization: Bearer {SECRET}"))
    got = store.get("acme", "r1", "extract")
    assert got is not None and got.error == "Authorization: Bearer ***"
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert SECRET not in json.dumps(conn.execute("SELECT * FROM etl_runs").fetchall())


@pytest.mark.parametrize(
    "uri",
    [
        # parsed correctly: the failure is the refused connection, described without the password
        "mysql://etl:{s}/x?y#z@127.0.0.1:{port}/src?connect_timeout=2",
        # not parseable: named by conn_id only
        "mysql://etl:{s}@127.0.0.1:{s}/src",
    ],
)
def test_etlctl_never_prints_or_records_the_password(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    include = make_include(tmp_path)
    write_entity(include, "acme")
    value = uri.format(s=SECRET, port=free_port())
    state = tmp_path / "state.db"
    env = {"AIRFLOW_CONN_SRC_ACME": value, "ETL_INCLUDE_DIR": str(include), "ETL_STATE_DB": str(state)}
    for name, env_value in env.items():
        monkeypatch.setenv(name, env_value)
    proc = etlctl_run_stage("acme", "extract", tmp_path / "store", timeout=120, force=True)  # the extract alone
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("etlctl: error: acme: extract: "), proc.stderr
    if "{port}" in uri:
        assert "cannot connect to src_acme (mysql 127.0.0.1:" in lines[0]
    else:
        assert "connection 'src_acme': the URI is not valid" in lines[0]
    assert SECRET not in proc.stderr + proc.stdout
    record = SqliteRunStore(state).get("acme", "r1", "extract")
    assert record is not None and record.status == "failed" and record.error
    assert SECRET not in state.read_bytes().decode("utf-8", "replace")


# -- local_infile and TLS -------------------------------------------------------------------------
def _mysql(extra: dict[str, object], **kwargs: bool) -> MySQLDatabase:
    db = open_database(parse_connection("t", json.dumps({"conn_type": "mysql", "host": "h", "extra": extra})), **kwargs)
    assert isinstance(db, MySQLDatabase)
    return db


def test_local_infile_only_when_asked_and_ssl_when_the_connection_asks() -> None:
    plain = _mysql({})._connect_kwargs()
    assert plain["local_infile"] == 0 and "ssl" not in plain
    assert _mysql({}, local_infile=True)._connect_kwargs()["local_infile"] == 1
    assert _mysql({"ssl": {"ca": "/etc/rds-ca.pem"}})._connect_kwargs()["ssl"] == {"ca": "/etc/rds-ca.pem"}
    assert _mysql({"ssl": "/etc/rds-ca.pem"})._connect_kwargs()["ssl"] == {"ca": "/etc/rds-ca.pem"}


def test_a_connection_without_local_infile_refuses_to_load(tmp_path: Path) -> None:
    from entity_etl.runtime.databases import DatabaseError

    with pytest.raises(DatabaseError, match="opened without local_infile"):
        _mysql({}).load_csv("stg", ["id"], tmp_path / "x.csv")
