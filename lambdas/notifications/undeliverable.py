"""Why a message cannot be delivered."""

from __future__ import annotations


class Undeliverable(Exception):
    """The message cannot be delivered; ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
