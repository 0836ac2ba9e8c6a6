"""Resolve a connection by ``conn_id`` the way Airflow does, without importing Airflow.

Order: the ``AIRFLOW_CONN_<CONN_ID>`` environment variable (URI or JSON, as Airflow accepts), then —
when ``ETL_SECRETS_BACKEND=aws`` (set in the Batch job definition) — the AWS Secrets Manager secret
``<prefix>/<conn_id>`` (prefix ``airflow/connections`` by default, the amazon provider's default).
On an Airflow worker the local backend passes Airflow's own resolver instead (see
``entity_etl.orchestration.stage_operator``), so connections defined in the UI work too.

The parsing is hand-written because the runtime must not import Airflow; it follows
``airflow.models.Connection``'s URI rules (scheme ``-`` → ``_``, percent-decoding, query → extras,
``__extra__`` JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


class ConnectionNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class ConnectionInfo:
    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # extras may hold key passwords

    def describe(self) -> str:
        """A log-safe description: no password, no extras."""
        where = self.host or ""
        if self.port:
            where += f":{self.port}"
        if self.schema:
            where += f"/{self.schema}"
        return f"{self.conn_id} ({self.conn_type} {where})"


def parse_connection(conn_id: str, value: str) -> ConnectionInfo:
    """Parse an Airflow connection serialised as a URI or as JSON."""
    value = value.strip()
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"connection {conn_id!r}: invalid JSON ({exc.msg})") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type=str(data.get("conn_type", "")).replace("-", "_"),
            host=data.get("host"),
            port=int(data["port"]) if data.get("port") not in (None, "") else None,
            login=data.get("login"),
            password=data.get("password"),
            schema=data.get("schema"),
            extra=dict(extra),
        )
    parts = urlsplit(value)
    if not parts.scheme:
        raise ValueError(f"connection {conn_id!r}: not a URI or JSON object")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    uri_extra: dict[str, Any] = json.loads(query.pop("__extra__")) if "__extra__" in query else dict(query)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname) if parts.hostname else None,
        port=parts.port,
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=unquote(parts.path[1:]) if parts.path else None,
        extra=uri_extra,
    )


ConnectionResolver = Callable[[str], ConnectionInfo]


def _secrets_manager_value(conn_id: str) -> str | None:
    import boto3

    prefix = os.environ.get("ETL_SECRETS_PREFIX", "airflow/connections").rstrip("/")
    client = boto3.client("secretsmanager")
    try:
        response = client.get_secret_value(SecretId=f"{prefix}/{conn_id}")
    except client.exceptions.ResourceNotFoundException:
        return None
    secret = response.get("SecretString")
    return str(secret) if secret is not None else None


def resolve_connection(conn_id: str) -> ConnectionInfo:
    """The default resolver: environment, then Secrets Manager when enabled."""
    env_value = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if env_value:
        return parse_connection(conn_id, env_value)
    if os.environ.get("ETL_SECRETS_BACKEND", "env") == "aws":
        secret = _secrets_manager_value(conn_id)
        if secret is not None:
            return parse_connection(conn_id, secret)
    raise ConnectionNotFoundError(
        f"connection {conn_id!r} is not defined: set AIRFLOW_CONN_{conn_id.upper()}"
        + (" or create the Secrets Manager secret" if os.environ.get("ETL_SECRETS_BACKEND") == "aws" else "")
    )
