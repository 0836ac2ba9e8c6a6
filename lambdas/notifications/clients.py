"""boto3 clients, one per service per container, and numeric settings from the environment."""

from __future__ import annotations

import os
from typing import Any

import boto3


def float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


def forget_clients() -> None:
    _clients.clear()
