"""JSON log lines (AWS Lambda Powertools ``Logger``) with phone numbers masked.

Every line is one JSON object on stdout, which CloudWatch Logs keeps as one event. Callers mask the
phone numbers they log (``phone.mask_phone``); the formatter masks any E.164-looking number left in
the finished line as well, so a full number cannot reach a log even through an exception's text.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from .phone import mask_phones_in_text

SERVICE = "connect-survey"


class MaskingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, with E.164 numbers masked in the serialized line."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return mask_phones_in_text(super().serialize(log))


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (a test's capture, the runtime's stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE),
    level=os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO",
    logger_formatter=MaskingFormatter(),
    logger_handler=StdoutHandler(),
)
