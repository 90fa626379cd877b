"""What every reload of this package shares: SIGHUP, and how a reload reports.

- :class:`ReloadOnSignal`: runs a reloader in the reactor on each SIGHUP while the service
  runs (SIGHUP's default action, ending the process, is never taken).
- :func:`logKeysChanged`: one line for a keys file read again: how many identities, which
  were added or removed and which got a new key; never a key.
- :func:`logKept`: one line for a file that could not be used, whose previous contents
  stay in force.
- :func:`rereadPskFile`: a PSK file read again, or ``None`` (logged) to keep the keys.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from types import FrameType
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_rserpool.security.psk import PskTable, loadPskFile

__all__ = [
    "ReloadOnSignal",
    "Reloading",
    "keyChanges",
    "logKept",
    "logKeysChanged",
    "rereadPskFile",
]

log = Logger()


class Reloading(Protocol):
    """Something that re-reads its files when asked."""

    def reload(self) -> None:
        """Re-read every file; keep what a bad one held, and log what changed."""


class ReloadOnSignal(Service):
    """Runs ``reloader.reload`` in the reactor on SIGHUP while running (never stops it).

    ``what`` names what is reloaded, for the line logged when the signal arrives.
    """

    def __init__(self, reloader: Reloading, reactor: Any, what: str) -> None:
        self.reloader = reloader
        self.reactor = reactor
        self.what = what
        self._previous: Any = None

    def startService(self) -> None:
        """Install the SIGHUP handler."""
        super().startService()  # type: ignore[no-untyped-call]
        self._previous = signal.signal(signal.SIGHUP, self._received)

    def stopService(self) -> None:
        """Restore the previous SIGHUP handler."""
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None
        super().stopService()  # type: ignore[no-untyped-call]

    def _received(self, number: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading {what}", what=self.what)
        self.reactor.callFromThread(self.reloader.reload)


def keyChanges(
    before: Mapping[Any, Any], after: Mapping[Any, Any]
) -> tuple[list[str], list[str], list[str]]:
    """The identities added, removed, and kept with a new secret, as sorted text."""
    added = sorted(str(i) for i in set(after) - set(before))
    removed = sorted(str(i) for i in set(before) - set(after))
    changed = sorted(str(i) for i in after if i in before and before[i] != after[i])
    return added, removed, changed


def logKeysChanged(
    path: str,
    before: Mapping[Any, Any],
    after: Mapping[Any, Any],
    *,
    items: str = "identities",
    secret: str = "key",
) -> None:
    """Log that ``path`` was read again and how its ``items`` changed (never a secret):
    ``Reload: PATH: 3 identities; added [...], removed none, new key for none``."""
    added, removed, changed = keyChanges(before, after)
    log.info(
        "Reload: {path}: {count} {items}; added {added}, removed {removed}, "
        "new {secret} for {changed}",
        path=path,
        count=len(after),
        items=items,
        secret=secret,
        added=added or "none",
        removed=removed or "none",
        changed=changed or "none",
    )


def logKept(what: str, reason: str) -> None:
    """Log in one line that ``what`` stays as it was, because of ``reason``."""
    log.error("Reload: kept the previous {what}: {error}", what=what, error=reason)


def rereadPskFile(path: str) -> PskTable | None:
    """The keys of the PSK file at ``path``, read again; ``None`` if it cannot be used (a
    missing file, a mode others may read, a bad line), logged with :func:`logKept`."""
    try:
        return loadPskFile(path)
    except (OSError, ValueError) as e:
        logKept("pre-shared keys", f"{path}: {e.strerror}" if isinstance(e, OSError) else str(e))
        return None
