"""Structured logs: one JSON object per line on stdout."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any


class JsonLineHandler(logging.Handler):
    """One JSON object per line on stdout (CloudWatch Logs keeps each line as one event).

    Hand-written rather than AWS Lambda Powertools' Logger: it is the only piece of Powertools this
    function would use, and it keeps the function free of a layer or a bundled dependency. It looks
    ``sys.stdout`` up on every record, so it works whatever the function's LoggingConfig is.
    """

    def emit(self, record: logging.LogRecord) -> None:
        line: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        try:
            sys.stdout.write(json.dumps(line, default=str) + "\n")
            sys.stdout.flush()
        except Exception:
            self.handleError(record)


LOG = logging.getLogger("teams_notifications")
if not LOG.handlers:
    LOG.addHandler(JsonLineHandler())
    LOG.propagate = False  # the runtime's root handler would print every line a second time
LOG.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())


def log(level: int, message: str, **fields: Any) -> None:
    LOG.log(level, message, extra={"fields": {k: v for k, v in fields.items() if v is not None}})
