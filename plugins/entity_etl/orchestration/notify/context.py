"""Reading an Airflow callback context: a worker's (objects), the DAG processor's or the triggerer's
(plain dicts), with or without XCom access."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj.name`` or ``obj[name]``: a context holds objects (worker) or plain dicts (triggerer)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _base_url() -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get("api", "base_url", fallback="http://localhost:8080/")).rstrip("/")


def airflow_run_url(dag_id: str, run_id: str) -> str:
    return f"{_base_url()}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def entity_from_dag(dag: Any) -> str | None:
    for tag in field(dag, "tags", None) or ():
        if isinstance(tag, str) and tag.startswith("entity:"):
            return tag[len("entity:") :]
    return None


def xcom(ti: Any, task_id: str, key: str) -> Any:
    try:
        return ti.xcom_pull(task_ids=task_id, key=key)
    except Exception:  # no XCom access from here (e.g. a context without a supervisor)
        return None
