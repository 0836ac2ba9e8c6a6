"""The DAG-run note of an entity run: the run's summary, set when the run ends.

Airflow 3 gives a task no way to write its DAG run's note, so a listener does it (registered by the
``entity_etl_plugin`` plugin): ``on_dag_run_success``/``on_dag_run_failed`` run where the run's state
changes (the scheduler, or the API server for a run marked by hand), with the run as an ORM object in
that session. The note is the summary the teardown task stored in the run's record
(``run_records.close_run``); a note someone wrote by hand is kept, with the summary after it.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

from entity_etl.runtime.run_store import RUN, open_run_store
from entity_etl.runtime.run_summary import format_note, stored_summary

log = logging.getLogger(__name__)

DAG_PREFIX = "etl_"
#: The Airflow database holds at most this many characters of a note.
NOTE_LIMIT = 1000


def note_for(dag_id: str, run_id: str) -> str | None:
    """The note of an entity run, from the run store; ``None`` for another DAG or a run without summary."""
    if not dag_id.startswith(DAG_PREFIX):
        return None
    entity = dag_id[len(DAG_PREFIX) :]
    summary = stored_summary(open_run_store().get(entity, run_id, RUN))
    return format_note(entity, summary)[:NOTE_LIMIT] if summary is not None else None


SEPARATOR = "\n\n---\n"


def merged_note(existing: str | None, ours: str) -> str:
    """Our note replaces an earlier one of ours (a cleared and rerun run); a hand-written note stays
    first, with ours after a rule."""
    marker = ours.split(": run ", 1)[0] + ": run "  # "**<entity>: run "
    hand = (existing or "").split(SEPARATOR + marker, 1)[0]
    if not hand or hand.startswith(marker):
        return ours
    return f"{hand}{SEPARATOR}{ours}"[:NOTE_LIMIT]


def set_run_note(dag_run: Any) -> None:
    note = note_for(str(dag_run.dag_id), str(dag_run.run_id))
    if note is None:
        return
    dag_run.note = merged_note(dag_run.note, note)  # flushed with the session that changed the run's state
    log.info("%s %s: run note set", dag_run.dag_id, dag_run.run_id)


class RunNoteListener:
    """Sets the note of each finished entity run; never fails the state change it listens to."""

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        self._safely(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        self._safely(dag_run)

    @staticmethod
    def _safely(dag_run: Any) -> None:
        try:
            set_run_note(dag_run)
        except Exception:  # a run store that cannot be read must not stop the scheduler
            log.exception("%s %s: could not set the run note", dag_run.dag_id, dag_run.run_id)


run_note_listener = RunNoteListener()
