"""SQL identifier safety.

Table and column names from entity files end up inside generated SQL, where bind parameters cannot
be used. They are therefore restricted to a conservative, dialect-neutral alphabet and quoted on use.
"""

from __future__ import annotations

import re

_PART = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_IDENTIFIER = re.compile(rf"^{_PART}$")
_QUALIFIED = re.compile(rf"^{_PART}(\.{_PART})?$")


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
