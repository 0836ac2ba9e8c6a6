"""Runs through a :class:`deploy.local.airflow_local.LocalAirflow`, over its REST API."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from pathlib import Path
from typing import Any

from deploy.local.airflow_local import LocalAirflow

TERMINAL = {"success", "failed"}


def dags_folder_with(folder: Path, *extra: Path) -> Path:
    """A DAGs folder holding the project's ``dags/*.py`` and ``extra`` files (symlinks)."""
    from support.entity_files import ROOT

    folder.mkdir(parents=True, exist_ok=True)
    for source in [*sorted((ROOT / "dags").glob("*.py")), *extra]:
        (folder / source.name).symlink_to(source)
    return folder


def wait_for(check: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def quoted(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def unpause(airflow: LocalAirflow, dag_id: str) -> None:
    wait_for(lambda: _dag_known(airflow, dag_id), 120, f"the DAG processor to parse {dag_id}")
    airflow.api(f"dags/{dag_id}", body={"is_paused": False}, method="PATCH")


def _dag_known(airflow: LocalAirflow, dag_id: str) -> bool:
    return dag_id in {d["dag_id"] for d in airflow.api("dags?limit=1000")["dags"]}


def trigger(airflow: LocalAirflow, dag_id: str, run_id: str, logical_date: dt.datetime) -> None:
    airflow.api(f"dags/{dag_id}/dagRuns", body={"dag_run_id": run_id, "logical_date": logical_date.isoformat()})


def wait_for_run(airflow: LocalAirflow, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
    """The run once it has finished (success or failed)."""

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = airflow.api(f"dags/{dag_id}/dagRuns/{quoted(run_id)}")
        return run if run["state"] in TERMINAL else None

    result: dict[str, Any] = wait_for(finished, timeout, f"{dag_id} run {run_id} to finish")
    return result


def task_states(airflow: LocalAirflow, dag_id: str, run_id: str) -> dict[str, str | None]:
    answer = airflow.api(f"dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances?limit=100")
    return {t["task_id"]: t["state"] for t in answer["task_instances"]}


def xcom(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str) -> Any:
    path = f"dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances/{task_id}/xcomEntries/return_value?deserialize=true"
    return airflow.api(path)["value"]


def task_log(airflow: LocalAirflow, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
    """The task log as the UI shows it (the REST API's structured lines, as JSON text)."""
    import json

    path = f"dags/{dag_id}/dagRuns/{quoted(run_id)}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
    return json.dumps(airflow.api(path)["content"])
