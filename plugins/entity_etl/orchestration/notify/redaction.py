"""Text that leaves the process in an event: redacted, then cut to a bounded length."""

from __future__ import annotations

import contextlib

from entity_etl.runtime.redaction import redact as runtime_redact

MAX_ERROR_CHARS = 1000


def redact(text: str) -> str:
    """``text`` without credentials, secret-looking values and phone numbers.

    Airflow's secrets masker first (it hides the values it has seen registered: connection passwords
    read in this process), then the runtime's :func:`entity_etl.runtime.redaction.redact`, the one set
    of rules the run store, ``etlctl`` and the Teams Lambda apply too: an error message goes to SNS,
    Teams and our logs and may quote a connection URI or a row value (a phone number in a
    duplicate-key error, say).
    """
    with contextlib.suppress(Exception):  # the masker of the running Airflow process, when it has one
        from airflow.sdk.log import redact as airflow_redact

        text = str(airflow_redact(text))
    return runtime_redact(text)


def truncate(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
