"""``${VAR}`` interpolation of entity config values from the environment.

Only the exact form ``${NAME}`` is recognised; ``$${`` escapes a literal ``${``. An unset variable is an
error: a silently empty connection id or queue name is worse than a failed parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnsetVariableError(ValueError):
    def __init__(self, path: str, name: str) -> None:
        super().__init__(f"environment variable ${{{name}}} is not set")
        self.path = path
        self.name = name


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Return ``value`` with every ``${VAR}`` in its strings replaced from ``env``.

    Raises :class:`UnsetVariableError` naming the dotted field path of the first unset variable.
    """
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            escaped, name = match.group(1), match.group(2)
            if escaped:
                return "${" + name + "}"
            if name not in env:
                raise UnsetVariableError(path, name)
            return env[name]

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]" if path else f"[{i}]") for i, v in enumerate(value)]
    return value


def placeholders(value: Any) -> list[tuple[str, str]]:
    """Every ``${NAME}`` in ``value``'s strings as ``("", NAME)``, and every ``$${NAME}`` escape as ``("$", NAME)``.

    With none, :func:`interpolate` returns an equal copy; the non-escaped names are the variables it reads.
    """
    found: list[tuple[str, str]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "$" in item:
                found.extend(_VAR.findall(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
