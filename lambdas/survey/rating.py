"""The survey answer: a whole number from 1 to 5, as the caller keyed it in."""

from __future__ import annotations

import re

RATING_PATTERN = re.compile(r"[1-5]")
MIN_RATING, MAX_RATING = 1, 5


class RatingError(ValueError):
    """``code`` is ``MISSING_RATING`` (absent or blank) or ``INVALID_RATING`` (anything but 1-5)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_rating(value: object) -> int:
    """``"4"`` -> 4. Rejects ``"0"``, ``"6"``, ``"4.5"``, ``"abc"``, ``"04"``; blank or absent is missing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RatingError("MISSING_RATING", "no rating was entered")
    if isinstance(value, int) and not isinstance(value, bool) and MIN_RATING <= value <= MAX_RATING:
        return value
    text = value.strip() if isinstance(value, str) else None
    if text is not None and RATING_PATTERN.fullmatch(text):
        return int(text)
    shown = repr(value)[:24]
    raise RatingError("INVALID_RATING", f"rating {shown} is not a whole number from {MIN_RATING} to {MAX_RATING}")
