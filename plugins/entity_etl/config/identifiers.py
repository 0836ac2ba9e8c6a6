"""SQL identifier safety, and when two table names are one table.

Table and column names from entity files end up inside generated SQL, where bind parameters cannot
be used. They are therefore restricted to a conservative, dialect-neutral alphabet and quoted on use.
"""

from __future__ import annotations

import re

_PART = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
IDENTIFIER_PATTERN = rf"^{_PART}$"
TABLE_PATTERN = rf"^{_PART}(\.{_PART})?$"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_QUALIFIED = re.compile(TABLE_PATTERN)


def check_identifier(name: str) -> str:
    """Return ``name`` if it is a safe column name, else raise ``ValueError``."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a safe SQL identifier: use letters, digits and '_', "
            "start with a letter or '_', at most 64 characters"
        )
    return name


def check_table_name(name: str) -> str:
    """Return ``name`` if it is a safe table name (optionally ``schema.table``), else raise."""
    if not _QUALIFIED.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a safe SQL table name: use letters, digits and '_' "
            "(optionally 'schema.table'), start with a letter or '_', at most 64 characters per part"
        )
    return name


# -- when two table names are one table (see table_identity.py) -----------------------------------
_QUOTES = '`"'


def _split(name: str) -> list[str]:
    """The dotted parts of ``name``; a part may be quoted (```a.b``` or ``"a.b"``, doubled quote escaped)."""
    if '"' not in name and "`" not in name:
        return name.split(".")
    parts: list[str] = []
    current, quote, i = "", "", 0
    while i < len(name):
        char = name[i]
        if quote:
            if char == quote and name[i + 1 : i + 2] == quote:
                current, i = current + char, i + 2
                continue
            if char == quote:
                quote = ""
            else:
                current += char
        elif char in _QUOTES:
            quote = char
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    parts.append(current)
    return parts


def normalised_table(name: str) -> tuple[str | None, str]:
    """``(schema or None, table)``, lower-cased and unquoted: ``'`Main`.Company_DE'`` -> ``('main', 'company_de')``."""
    parts = [part.strip().lower() for part in _split(name.strip())]
    if len(parts) == 1:
        return None, parts[0]
    return ".".join(parts[:-1]), parts[-1]


def same_table(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` may name one table: same table part, and same schema unless either has none."""
    return same_normalised(normalised_table(a), normalised_table(b))


def same_normalised(a: tuple[str | None, str], b: tuple[str | None, str]) -> bool:
    """:func:`same_table` on names already passed through :func:`normalised_table`."""
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])
