"""The entity's query text as the chunked stages wrap it in a derived table.

Written by hand rather than with a SQL parser: the job image carries none, and a formatter that strips
comments would also strip MySQL's optimizer hints (``/*+ ... */``) and executable comments (``/*! ... */``).
The scan knows only what it needs to stay outside string literals, quoted names and comments.
"""

from __future__ import annotations

_QUOTES = "'\"`"


def _skip_quoted(sql: str, i: int) -> int:
    """The index after the literal or quoted name opened at ``sql[i]`` (doubled quotes, backslash escapes)."""
    quote, i = sql[i], i + 1
    while i < len(sql):
        if sql[i] == "\\" and quote != "`":
            i += 2
        elif sql[i] == quote:
            if sql.startswith(quote, i + 1):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return i


def _skip_comment(sql: str, i: int) -> int | None:
    """The index after the comment starting at ``sql[i]``, or None if none starts there."""
    if sql.startswith("--", i) or sql[i] == "#":
        end = sql.find("\n", i)
        return len(sql) if end < 0 else end
    if sql.startswith("/*", i):
        end = sql.find("*/", i + 2)
        return len(sql) if end < 0 else end + 2
    return None


def without_statement_end(sql: str) -> str:
    """``sql`` without the ``;`` (one or more) that ends it, even before trailing comments or blanks."""
    ends: list[int] = []  # the semicolons after the last code character
    i = 0
    while i < len(sql):
        if sql[i] in _QUOTES:
            i, ends = _skip_quoted(sql, i), []
            continue
        after_comment = _skip_comment(sql, i)
        if after_comment is not None:
            i = after_comment
            continue
        if sql[i] == ";":
            ends.append(i)
        elif not sql[i].isspace():
            ends = []
        i += 1
    drop = set(ends)
    return "".join(ch for n, ch in enumerate(sql) if n not in drop)
