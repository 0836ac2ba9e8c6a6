"""The runtime's AWS adapters: the S3 object store and Secrets Manager connections against a real moto
server; Amazon Translate (which moto lacks) through botocore's Stubber on a real client, asserting
each request exactly."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.stub import Stubber

from entity_etl.runtime.connections import (
    ConnectionInfo,
    ConnectionNotFoundError,
    parse_connection,
    resolve_connection,
)
from entity_etl.runtime.object_store import S3ObjectStore, open_object_store
from entity_etl.runtime.translators import AmazonTranslator, TranslationError
from support.servers import MotoServer

REGION = "eu-west-1"
BUCKET = "etl-extracts"


def make_bucket(name: str = BUCKET) -> Any:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


# -- S3 object store ------------------------------------------------------------------------------
@pytest.mark.moto
def test_s3_store_round_trip(aws: MotoServer, tmp_path: Path) -> None:
    s3 = make_bucket()
    s3.put_object(Bucket=BUCKET, Key="elsewhere/keep.txt", Body=b"not the store's")
    store = S3ObjectStore(BUCKET, "/runs/de/")
    assert store.url == f"s3://{BUCKET}/runs/de"

    # A file above boto3's 8 MiB multipart threshold: uploaded in parts, read back byte for byte.
    big = tmp_path / "part-00001.csv.gz"
    payload = os.urandom(9 * 1024 * 1024 + 123)
    big.write_bytes(payload)
    uri = store.put_file("extract/part-00001.csv.gz", big)
    assert uri == f"s3://{BUCKET}/runs/de/extract/part-00001.csv.gz"
    head = s3.head_object(Bucket=BUCKET, Key="runs/de/extract/part-00001.csv.gz")
    assert head["ContentLength"] == len(payload)
    assert head["ETag"].strip('"').endswith("-2")  # two parts: a managed multipart upload
    copy = tmp_path / "copy.gz"
    store.get_file("extract/part-00001.csv.gz", copy)
    assert hashlib.sha256(copy.read_bytes()).digest() == hashlib.sha256(payload).digest()

    manifest = json.dumps({"parts": 1}).encode()
    assert store.put_bytes("extract/_manifest.json", manifest) == f"s3://{BUCKET}/runs/de/extract/_manifest.json"
    assert store.get_bytes("extract/_manifest.json") == manifest
    store.put_bytes("stats/extract.json", b"")
    assert store.get_bytes("stats/extract.json") == b""
    assert s3.get_object(Bucket=BUCKET, Key="runs/de/extract/_manifest.json")["Body"].read() == manifest

    assert store.list("extract/") == ["extract/_manifest.json", "extract/part-00001.csv.gz"]
    assert store.list("") == ["extract/_manifest.json", "extract/part-00001.csv.gz", "stats/extract.json"]
    assert store.list("nothing/") == []

    assert store.delete_prefix("extract/") == 2
    assert store.list("") == ["stats/extract.json"]
    assert store.delete_prefix("extract/") == 0
    # Objects outside the store's prefix are neither listed nor deleted.
    assert s3.get_object(Bucket=BUCKET, Key="elsewhere/keep.txt")["Body"].read() == b"not the store's"


@pytest.mark.moto
def test_s3_store_missing_objects_are_file_not_found(aws: MotoServer, tmp_path: Path) -> None:
    make_bucket()
    store = S3ObjectStore(BUCKET, "runs")
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/runs/stats/nope.json"):
        store.get_bytes("stats/nope.json")
    target = tmp_path / "nope.csv.gz"
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/runs/extract/nope.csv.gz"):
        store.get_file("extract/nope.csv.gz", target)
    assert not target.exists()


@pytest.mark.moto
def test_s3_store_without_prefix_and_over_a_thousand_keys(aws: MotoServer) -> None:
    make_bucket()
    store = open_object_store(f"s3://{BUCKET}")
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix, store.url) == (BUCKET, "", f"s3://{BUCKET}")
    # More than one list page (1,000 keys). (moto does not enforce DeleteObjects' 1,000-key limit, so the
    # delete batching itself is not checked by the server.)
    keys = [f"extracts/de/part-{i:05d}.csv.gz" for i in range(1001)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.put_bytes(key, key.encode()), keys))
    store.put_bytes("extracts/jp/part-00000.csv.gz", b"jp")
    assert store.uri(keys[0]) == f"s3://{BUCKET}/{keys[0]}"
    assert store.list("extracts/de/") == keys
    assert store.delete_prefix("extracts/de/") == 1001
    assert store.list("extracts/") == ["extracts/jp/part-00000.csv.gz"]


@pytest.mark.moto
def test_open_object_store_s3_url(aws: MotoServer) -> None:
    make_bucket()
    store = open_object_store(f"s3://{BUCKET}/team/etl/")
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix) == (BUCKET, "team/etl")
    store.put_bytes("a.txt", b"a")
    assert boto3.client("s3").get_object(Bucket=BUCKET, Key="team/etl/a.txt")["Body"].read() == b"a"
    with pytest.raises(ValueError, match="no bucket"):
        open_object_store("s3:///team/etl")


# -- connections ----------------------------------------------------------------------------------
@pytest.fixture
def no_connection_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_"):
            monkeypatch.delenv(name)
    for name in ("ETL_SECRETS_BACKEND", "ETL_SECRETS_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_connection_from_env_uri(no_connection_env: pytest.MonkeyPatch) -> None:
    no_connection_env.setenv(
        "AIRFLOW_CONN_DE_SOURCE",
        "mysql://etl%40reader:p%40ss%3Aw%2Frd%25%20x@db.example.com:3307/handels%2Fregister"
        "?charset=utf8mb4&ssl_mode=REQUIRED&empty=",
    )
    info = resolve_connection("de_source")
    assert info == ConnectionInfo(
        conn_id="de_source",
        conn_type="mysql",
        host="db.example.com",
        port=3307,
        login="etl@reader",
        password="p@ss:w/rd% x",
        schema="handels/register",
        extra={"charset": "utf8mb4", "ssl_mode": "REQUIRED", "empty": ""},
    )
    assert info.password == "p@ss:w/rd% x"


def test_connection_from_env_uri_with_json_extra(no_connection_env: pytest.MonkeyPatch) -> None:
    extra = {"ssl": {"ca": "/etc/ssl/rds.pem"}, "connect_timeout": 5}
    no_connection_env.setenv(
        "AIRFLOW_CONN_TGT", f"aurora-mysql://u:pw@tgt:3306/dw?__extra__={quote(json.dumps(extra))}"
    )
    info = resolve_connection("tgt")
    assert info.conn_type == "aurora_mysql"
    assert info.extra == extra
    assert (info.host, info.port, info.login, info.password, info.schema) == ("tgt", 3306, "u", "pw", "dw")


def test_connection_from_env_json(no_connection_env: pytest.MonkeyPatch) -> None:
    no_connection_env.setenv(
        "AIRFLOW_CONN_JP_SOURCE",
        json.dumps(
            {
                "conn_type": "mysql",
                "host": "jp.example.com",
                "port": "3306",
                "login": "reader",
                "password": "pa ss/@:%",
                "schema": "houjin",
                "extra": {"unix_socket": "/run/mysqld.sock", "connect_timeout": 3},
            }
        ),
    )
    info = resolve_connection("jp_source")
    assert info == ConnectionInfo(
        conn_id="jp_source",
        conn_type="mysql",
        host="jp.example.com",
        port=3306,
        login="reader",
        password="pa ss/@:%",  # JSON values are taken literally, not percent-decoded
        schema="houjin",
        extra={"unix_socket": "/run/mysqld.sock", "connect_timeout": 3},
    )
    # extra may also be a JSON string, as Airflow allows.
    no_connection_env.setenv(
        "AIRFLOW_CONN_BR", json.dumps({"conn_type": "sqlite", "host": "/d.db", "extra": '{"a": 1}'})
    )
    assert resolve_connection("br").extra == {"a": 1}
    assert resolve_connection("br").port is None


@pytest.mark.parametrize(
    "uri",
    [
        "mysql://etl%40reader:p%40ss%3Aw%2Frd@db.example.com:3307/handels%2Fregister?charset=utf8mb4",
        "mysql://reader@db.example.com/sales",
        "aurora-mysql://u:pw@tgt.cluster-abc.eu-west-1.rds.amazonaws.com:3306/dw?__extra__=%7B%22ssl%22%3A+true%7D",
        "mysql://u:%2B%2F%3D%26%3F%23@h:1/s?a=1&b=two+words",
        "mysql://h",
    ],
)
def test_uri_parsing_matches_airflow(uri: str) -> None:
    """The runtime parses URIs without Airflow; it must read them the way Airflow's own parser does."""
    from airflow.sdk.definitions.connection import Connection

    ours = parse_connection("c", uri)
    theirs = Connection.from_uri(uri, conn_id="c")
    assert ours.conn_type == theirs.conn_type
    assert ours.host == theirs.host
    assert ours.port == theirs.port
    assert ours.login == theirs.login
    assert ours.password == theirs.password
    assert ours.schema == (theirs.schema or None)  # Airflow says "" where the runtime says None: no schema
    assert ours.extra == theirs.extra_dejson


def test_missing_connection_names_the_id(no_connection_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConnectionNotFoundError, match=r"'no_such_conn'.*AIRFLOW_CONN_NO_SUCH_CONN") as failure:
        resolve_connection("no_such_conn")
    assert "Secrets Manager" not in str(failure.value)
    assert isinstance(failure.value, LookupError)


@pytest.mark.moto
def test_connections_from_secrets_manager(aws: MotoServer, no_connection_env: pytest.MonkeyPatch) -> None:
    sm = boto3.client("secretsmanager")
    sm.create_secret(Name="airflow/connections/de_source", SecretString="mysql://reader:s%2Fcret@de-db:3306/hr")
    sm.create_secret(
        Name="airflow/connections/jp_source",
        SecretString=json.dumps(
            {"conn_type": "mysql", "host": "jp-db", "port": 3306, "login": "ro", "password": "pw", "extra": {"x": 1}}
        ),
    )
    sm.create_secret(Name="airflow/connections/shadowed", SecretString="mysql://from-secrets-manager")

    # Without ETL_SECRETS_BACKEND=aws, Secrets Manager is never asked.
    with pytest.raises(ConnectionNotFoundError, match="'de_source'"):
        resolve_connection("de_source")

    no_connection_env.setenv("ETL_SECRETS_BACKEND", "aws")
    de = resolve_connection("de_source")
    assert (de.conn_type, de.host, de.port, de.login, de.password, de.schema) == (
        "mysql",
        "de-db",
        3306,
        "reader",
        "s/cret",
        "hr",
    )
    jp = resolve_connection("jp_source")
    assert jp == ConnectionInfo(
        conn_id="jp_source", conn_type="mysql", host="jp-db", port=3306, login="ro", password="pw", extra={"x": 1}
    )
    # The environment variable wins over the secret.
    no_connection_env.setenv("AIRFLOW_CONN_SHADOWED", "mysql://from-env")
    assert resolve_connection("shadowed").host == "from-env"
    # A missing secret: the error names the id and where it was looked for.
    with pytest.raises(ConnectionNotFoundError, match=r"'nowhere'.*AIRFLOW_CONN_NOWHERE.*Secrets Manager"):
        resolve_connection("nowhere")

    # Another prefix (a trailing slash is tolerated).
    sm.create_secret(Name="etl/conns/de_source", SecretString="mysql://other-db")
    no_connection_env.setenv("ETL_SECRETS_PREFIX", "etl/conns/")
    assert resolve_connection("de_source").host == "other-db"
    with pytest.raises(ConnectionNotFoundError, match="'jp_source'"):
        resolve_connection("jp_source")


def test_connection_descriptions_never_show_the_password() -> None:
    password = "Sup3r$ecret-P@ss"
    info = parse_connection(
        "de_source", f"mysql://reader:{password.replace('$', '%24').replace('@', '%40')}@db:3306/hr"
    )
    assert info.password == password
    assert info.describe() == "de_source (mysql db:3306/hr)"
    for text in (info.describe(), repr(info), str(info), f"{info}"):
        assert password not in text
        assert "Sup3r" not in text
    assert "db" in repr(info)
    bare = ConnectionInfo(conn_id="x", conn_type="sqlite", host="/data/x.db", password=password)
    assert bare.describe() == "x (sqlite /data/x.db)"
    assert password not in repr(bare)


# -- Amazon Translate -----------------------------------------------------------------------------
@pytest.fixture
def translate(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real Amazon Translate client; every call it makes must have been stubbed (moto has no Translate)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return boto3.client("translate", region_name=REGION)


def expect_translation(stub: Stubber, text: str, result: str, source: str = "de", target: str = "en") -> None:
    stub.add_response(
        "translate_text",
        {"TranslatedText": result, "SourceLanguageCode": source, "TargetLanguageCode": target},
        expected_params={"Text": text, "SourceLanguageCode": source, "TargetLanguageCode": target},
    )


def throttle(stub: Stubber, text: str, source: str = "de", target: str = "en") -> None:
    stub.add_client_error(
        "translate_text",
        service_error_code="TooManyRequestsException",
        service_message="Rate exceeded",
        http_status_code=429,
        expected_params={"Text": text, "SourceLanguageCode": source, "TargetLanguageCode": target},
    )


def test_amazon_translator_sends_one_exact_request_per_text(translate: Any) -> None:
    translator = AmazonTranslator(client=translate, workers=1)
    with Stubber(translate) as stub:
        expect_translation(stub, "Maschinenbau", "Mechanical engineering")
        expect_translation(stub, "Einzelhandel", "Retail")
        result = translator.translate_batch(["Maschinenbau", "  ", "", "Einzelhandel"], "de", "en")
        stub.assert_no_pending_responses()
    # Blank values are kept as they are and cost no call.
    assert result == ["Mechanical engineering", "  ", "", "Retail"]

    with Stubber(translate) as stub:
        expect_translation(stub, "建設業", "Construction", source="ja", target="en-GB")
        assert translator.translate_batch(["建設業"], "ja", "en-GB") == ["Construction"]
        stub.assert_no_pending_responses()


def test_amazon_translator_retries_throttling(translate: Any) -> None:
    translator = AmazonTranslator(client=translate, workers=1, max_attempts=3)
    with Stubber(translate) as stub:
        throttle(stub, "Baugewerbe")
        throttle(stub, "Baugewerbe")
        expect_translation(stub, "Baugewerbe", "Construction")
        assert translator.translate_batch(["Baugewerbe"], "de", "en") == ["Construction"]
        stub.assert_no_pending_responses()

    with Stubber(translate) as stub:
        for _ in range(3):
            throttle(stub, "Baugewerbe")
        with pytest.raises(TranslationError, match="throttling"):
            translator.translate_batch(["Baugewerbe"], "de", "en")
        stub.assert_no_pending_responses()  # exactly max_attempts calls, no more


def test_amazon_translator_does_not_retry_other_errors(translate: Any) -> None:
    translator = AmazonTranslator(client=translate, workers=1, max_attempts=5)
    with Stubber(translate) as stub:
        stub.add_client_error(
            "translate_text",
            service_error_code="UnsupportedLanguagePairException",
            http_status_code=400,
            expected_params={"Text": "Hallo", "SourceLanguageCode": "de", "TargetLanguageCode": "xx"},
        )
        with pytest.raises(translate.exceptions.UnsupportedLanguagePairException):
            translator.translate_batch(["Hallo"], "de", "xx")
        stub.assert_no_pending_responses()


def test_amazon_translator_never_sends_texts_over_10000_bytes(translate: Any) -> None:
    at_limit = "ü" * 5000  # 5,000 characters, 10,000 UTF-8 bytes: allowed
    over_limit = "ü" * 5000 + "a"  # 10,001 bytes though far fewer than 10,000 characters
    assert len(at_limit.encode()) == 10_000 and len(over_limit.encode()) == 10_001
    translator = AmazonTranslator(client=translate, workers=1)
    with Stubber(translate) as stub:
        expect_translation(stub, at_limit, "ue")
        expect_translation(stub, "kurz", "short")
        # A call for over_limit would not match the next expected request and fail the test.
        result = translator.translate_batch([over_limit, at_limit, "kurz"], "de", "en")
        stub.assert_no_pending_responses()
    assert result == [None, "ue", "short"]
