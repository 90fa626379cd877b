"""Aligned plain-text tables for the ``rserpool`` command (no colours, no box drawing)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

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
    return oneLine(str(value))


def printable(text: str) -> str:
    """``text`` with every control character but the line feed replaced by ``?``."""
    return "".join(c if c.isprintable() or c == "\n" else "?" for c in text)


def oneLine(text: str) -> str:
    """``text`` on one line without control characters (a server's text may hold any)."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def formatTable(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``headers`` and ``rows`` as lines whose columns line up (trailing spaces stripped).

    Columns whose values are all numbers (or ``None``) are aligned right, header too.
    """
    values = [list(row) for row in rows]
    numeric = [
        any(row[c] is not None for row in values)
        and all(_isNumber(row[c]) or row[c] is None for row in values)
        for c in range(len(headers))
    ]
    texts = [[cell(value) for value in row] for row in values]
    widths = [max([len(h)] + [len(row[c]) for row in texts]) for c, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *texts]:
        parts = [
            text.rjust(widths[c]) if numeric[c] else text.ljust(widths[c])
            for c, text in enumerate(row)
        ]
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines) + "\n"


def _isNumber(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def isoTime(text: str | None) -> datetime | None:
    """An ISO 8601 time of an admin document (``None`` stays ``None``)."""
    return datetime.fromisoformat(text) if text else None


def relativeTime(text: str | None, now: datetime | None) -> str | None:
    """An ISO 8601 time as seconds from ``now``: ``in 25 s``, ``3.2 s ago``."""
    when = isoTime(text)
    if when is None or now is None:
        return text
    seconds = (when - now).total_seconds()
    return f"in {seconds:.0f} s" if seconds >= 0 else f"{-seconds:.1f} s ago"


def runningText(document: dict[str, Any]) -> str:
    """``twisted-rserpool 0.1.0, up 12 s`` from a status document's version and uptime."""
    text = f"twisted-rserpool {document.get('version', '?')}"
    uptime = document.get("uptime_seconds")
    if isinstance(uptime, int | float):
        text += f", up {float(uptime):.0f} s"
    return text


__all__ = [
    "EMPTY",
    "cell",
    "formatTable",
    "isoTime",
    "oneLine",
    "printable",
    "relativeTime",
    "runningText",
]
