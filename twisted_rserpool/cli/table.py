"""Aligned plain-text tables for the ``rserpool`` command (no colours, no box drawing)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: What a cell without a value shows.
EMPTY = "-"
#: Spaces between columns.
GAP = "  "


def cell(value: object) -> str:
    """A value as table text: ``-`` for ``None``, ``yes``/``no`` for booleans."""
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())  # one line, whatever the server sent


def formatTable(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``headers`` and ``rows`` as lines whose columns line up (trailing spaces stripped).

    Columns whose every value is a number are aligned right (header too), the others left.
    """
    texts = [[cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    numeric = [True] * len(headers)
    for row in texts:
        for column, text in enumerate(row):
            widths[column] = max(widths[column], len(text))
            numeric[column] = numeric[column] and (text == EMPTY or _isNumber(text))
    lines = []
    for row in [list(headers), *texts]:
        parts = [
            text.rjust(widths[c]) if numeric[c] else text.ljust(widths[c])
            for c, text in enumerate(row)
        ]
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _isNumber(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


__all__ = ["EMPTY", "cell", "formatTable"]
