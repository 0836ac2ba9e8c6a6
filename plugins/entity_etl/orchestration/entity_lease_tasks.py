"""The setup and teardown tasks around an entity run: take the entity lease (opening the run's record
in the run store), and release it (closing the record); and the run's lease owner."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from entity_etl.runtime import run_records
from entity_etl.runtime.lease import LeaseHeldError, default_ttl_s, open_lease_store
from entity_etl.runtime.progress import iso
from entity_etl.runtime.run_store import open_run_store


def lease_owner(context: Any) -> str:
    """The lease owner of a DAG run: the same for every task and every try of that run.

    ``ETL_ENVIRONMENT`` (one value per Airflow environment, e.g. ``mwaa-prod``) is appended: two
    environments that share the lease table run the same scheduled run ids, and without it both
    would count as the holder.
    """
    owner = f"{context['dag'].dag_id}/{context['run_id']}"
    environment = os.environ.get("ETL_ENVIRONMENT", "").strip()
    return f"{owner}@{environment}" if environment else owner


class EntityLeaseSensor(BaseSensorOperator):
    """Setup task: wait (rescheduling, so no worker slot is held) until this run holds the entity lease.

    ``wait_s=0`` fails at once instead, naming the holder.
    """

    template_fields: Sequence[str] = ("entity",)

    def __init__(self, *, entity: str, wait_s: float, **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 60)
        kwargs.setdefault("mode", "reschedule")
        super().__init__(timeout=max(wait_s, 1), **kwargs)
        self.entity = entity
        self.wait_s = wait_s

    def poke(self, context: Any) -> bool:
        owner = lease_owner(context)
        try:
            lease = open_lease_store().acquire(self.entity, owner, default_ttl_s())
        except LeaseHeldError as exc:
            if self.wait_s <= 0:
                raise AirflowFailException(str(exc)) from None
            self.log.info("waiting for the entity lease: %s", exc)
            return False
        self.log.info("entity lease taken by %s until %s", owner, iso(lease.expires_at))
        # A retry of this setup task after the run record moved on keeps the later record.
        run_records.open_run(
            open_run_store(), self.entity, str(context["run_id"]), attempt=int(context["ti"].try_number)
        )
        return True

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout:
            holder = open_lease_store().holder(self.entity)
            who = holder.describe() if holder else "nobody any more (try again)"
            raise AirflowSensorTimeout(
                f"{self.entity}: gave up after {self.wait_s:.0f}s waiting for the entity lease, held by {who}"
            ) from None


class EntityLeaseReleaseOperator(BaseOperator):
    """Teardown task: runs even when a stage failed; closes the run record and frees the lease."""

    template_fields: Sequence[str] = ("entity",)

    def __init__(self, *, entity: str, stages: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entity = entity
        self.stages = list(stages)

    def execute(self, context: Any) -> dict[str, Any]:
        run_id = str(context["run_id"])
        store = open_run_store()
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        interval = (start.isoformat(), end.isoformat()) if start is not None and end is not None else None
        status, failed, written = run_records.close_run(store, self.entity, run_id, self.stages, interval=interval)
        if not written:
            self.log.warning("run record not updated: the store holds a later state of it")
        released = open_lease_store().release(self.entity, lease_owner(context))
        self.log.info(
            "run %s of %s: %s; entity lease %s",
            run_id,
            self.entity,
            status,
            "released" if released else "was not held by this run",
        )
        return {"status": status, "lease_released": released, "not_succeeded": failed}
