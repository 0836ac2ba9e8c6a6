"""Connections resolved through Airflow, for stage code run in a worker (the local backend, the NPS DAG)."""

from __future__ import annotations

from entity_etl.runtime.connections import ConnectionInfo


def airflow_connection(conn_id: str) -> ConnectionInfo:
    """Resolve ``conn_id`` through Airflow (env, secrets backends, the metadata DB)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=str(conn.conn_type or ""),
        host=conn.host,
        port=conn.port,
        login=conn.login,
        password=conn.password,
        schema=conn.schema,
        extra=dict(conn.extra_dejson or {}),
    )
