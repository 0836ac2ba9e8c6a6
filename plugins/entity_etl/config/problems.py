"""How a config problem is reported: ``file: field: message``, with ``columns[3].name``-style field paths.

Model-level checks (one field against another) raise :func:`field_error`, which carries the path of
the field the problem is about, so that no message is filed under the model as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic_core import PydanticCustomError

#: The pydantic error type of :func:`field_error`; the loader appends its ``ctx["loc"]`` to the error's.
FIELD_ERROR = "entity_field"


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


class EntityConfigError(ValueError):
    """One entity file is invalid; ``problems`` lists every reason."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def field_error(loc: tuple[int | str, ...], message: str) -> PydanticCustomError:
    """An error about the field at ``loc`` (relative to the model whose validator raises it)."""
    return PydanticCustomError(FIELD_ERROR, "{message}", {"loc": loc, "message": message})


def format_loc(loc: Iterable[int | str]) -> str:
    """``("columns", 3, "name")`` as ``columns[3].name``; ``-`` for the file as a whole."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "-"
