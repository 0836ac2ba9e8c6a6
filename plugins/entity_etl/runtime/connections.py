"""Resolve a connection by ``conn_id`` the way Airflow does, without importing Airflow.

Order: the ``AIRFLOW_CONN_<CONN_ID>`` environment variable (URI or JSON, as Airflow accepts), then —
when ``ETL_SECRETS_BACKEND=aws`` (set in the Batch job definition) — the AWS Secrets Manager secret
``<prefix>/<conn_id>`` (prefix ``airflow/connections`` by default, the amazon provider's default).
On an Airflow worker the local backend passes Airflow's own resolver instead (see
``entity_etl.orchestration.connections``), so connections defined in the UI work too.

The parsing is hand-written because the runtime must not import Airflow; it follows
``airflow.models.Connection``'s URI rules (scheme ``-`` → ``_``, percent-decoding, query → extras,
``__extra__`` JSON).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
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
    """Parse an Airflow connection serialised as a URI or as JSON.

    Never echoes ``value``: a problem is reported as ``connection '<conn_id>': <what is wrong>``, with
    no part of the text (it holds the password). A URI password should be percent-encoded, as Airflow
    expects; a raw one holding ``/``, ``?``, ``#``, ``@`` or ``:`` is still parsed, by splitting the
    userinfo at the last ``@`` that is followed by a valid ``host[:port]``.
    """
    problem: str | None = None
    try:
        return _parse(conn_id, value.strip())
    except _Invalid as exc:
        problem = str(exc)
    except (ValueError, TypeError, AttributeError, KeyError):
        problem = "not a valid connection"
    # Raised outside the except blocks: no chained exception carries the text (urllib's messages do).
    raise ValueError(f"connection {conn_id!r}: {problem}")


class _Invalid(ValueError):
    """A parse problem whose message holds nothing of the connection's text."""


_BAD_URI = "the URI is not valid (percent-encode special characters in the password, e.g. / as %2F)"
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9._~%!$&'*+,;=-]*|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?")


def _parse(conn_id: str, value: str) -> ConnectionInfo:
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        if not isinstance(data, dict):
            raise _Invalid("the JSON is not an object")
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra) if extra.strip() else {}
            except json.JSONDecodeError:
                raise _Invalid("extra is not valid JSON") from None
        if not isinstance(extra, dict):
            raise _Invalid("extra is not a JSON object")
        port = data.get("port")
        if port not in (None, "") and not str(port).isdigit():
            raise _Invalid("port is not a number")
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type=str(data.get("conn_type", "")).replace("-", "_"),
            host=data.get("host"),
            port=int(port) if port not in (None, "") else None,
            login=data.get("login"),
            password=data.get("password"),
            schema=data.get("schema"),
            extra=dict(extra),
        )
    scheme, sep, rest = value.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise _Invalid("not a URI or JSON object")
    userinfo, host_port, tail = _split_authority(rest)
    host, _, port_text = host_port.rpartition(":") if _has_port(host_port) else (host_port, "", "")
    if port_text and not port_text.isdigit():
        raise _Invalid(_BAD_URI)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    login, _, password = userinfo.partition(":") if userinfo is not None else ("", "", "")
    parts = urlsplit("x://h" + tail)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if "__extra__" in query:
        try:
            uri_extra: dict[str, Any] = json.loads(query.pop("__extra__"))
        except json.JSONDecodeError:
            raise _Invalid("__extra__ is not valid JSON") from None
        if not isinstance(uri_extra, dict):
            raise _Invalid("__extra__ is not a JSON object")
    else:
        uri_extra = dict(query)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=scheme.replace("-", "_"),
        host=unquote(host).lower() or None,  # as urllib and Airflow give it
        port=int(port_text) if port_text else None,
        login=unquote(login) or None,
        password=unquote(password) or None,
        schema=unquote(parts.path[1:]) or None,
        extra=uri_extra,
    )


def _has_port(host_port: str) -> bool:
    return ":" in (host_port.rsplit("]", 1)[-1] if host_port.startswith("[") else host_port)


def _split_authority(rest: str) -> tuple[str | None, str, str]:
    """(userinfo or None, host[:port], path?query#fragment) of the part of a URI after ``://``.

    A well-formed URI has no ``@`` after its authority (but in its query or fragment), and its
    authority is split at its last ``@``, as urllib does. Otherwise
    (a raw ``/``, ``?`` or ``#`` in the password moves urllib's end of the authority into it) the
    userinfo ends at the last ``@`` whose following text up to ``/``, ``?`` or ``#`` is a valid
    ``host[:port]``.
    """
    end = len(rest)
    for mark in "/?#":
        if mark in rest:
            end = min(end, rest.index(mark))
    authority, tail = rest[:end], rest[end:]
    marks = [tail.index(m) for m in "?#" if m in tail]
    candidates = list(_host_candidates(rest))
    in_data = "@" in authority and "@" in tail and marks and tail.index("@") > min(marks)
    # An "@" only in the query or fragment, as in an e-mail address among the extras, is data; unless
    # what follows one is clearly the server (a host with a port, or a host then the database path),
    # as when a raw password holds "#" or "?" before an "@".
    if "@" not in tail or (in_data and not any(strong for pos, _h, _t, strong in candidates if pos >= end)):
        userinfo, at, host_port = authority.rpartition("@")
        if _HOST_PORT.fullmatch(host_port):
            return (userinfo if at else None), host_port, tail
    if not candidates:
        raise _Invalid(_BAD_URI)
    pos, host_port, after, _strong = candidates[0]
    return rest[:pos], host_port, after


def _host_candidates(rest: str) -> Iterator[tuple[int, str, str, bool]]:
    """(position of an "@", the valid host[:port] after it, what follows, whether it looks like the
    server: a port, or a path next), from the last "@" back."""
    for pos in sorted((i for i, ch in enumerate(rest) if ch == "@"), reverse=True):
        after = rest[pos + 1 :]
        cut = min((after.index(m) for m in "/?#" if m in after), default=len(after))
        host_port = after[:cut]
        if host_port and _HOST_PORT.fullmatch(host_port):
            strong = _has_port(host_port) or after[cut : cut + 1] == "/"
            yield pos, host_port, after[cut:], strong


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
