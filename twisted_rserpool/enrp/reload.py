"""Reloading an ENRP server's pre-shared keys and authorization policy without a restart.

:class:`Reloader` re-reads the PSK files of the TLS listeners and the policy file when
asked (``twistd enrp`` asks on SIGHUP through :class:`ReloadOnSignal`). A file that cannot
be used keeps what was loaded before, and the reason is logged; a good one replaces it, and
what changed is logged (identities, never keys). Connections already open keep the
identity they authenticated with; the next handshakes and decisions use the new files.
Server identifier bindings (RFC 5355 2.5) are not reloaded: they are kept from the start.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from twisted_rserpool.security.authorization import AuthorizationPolicy, PolicyError
from twisted_rserpool.security.psk import PskTable, loadPskFile
from twisted_rserpool.security.tls import TlsServerCreator

__all__ = ["ReloadOnSignal", "Reloader"]

log = Logger()


class Reloader:
    """Re-reads the PSK files of ``creators`` and the policy at ``policyPath``.

    ``creators``: (PSK file, the TLS server creator that uses its keys). ``applyPolicy``
    installs a new policy wherever the server keeps one.
    """

    def __init__(
        self,
        creators: list[tuple[str, TlsServerCreator]],
        policyPath: str | None = None,
        applyPolicy: Callable[[AuthorizationPolicy], None] | None = None,
    ) -> None:
        self.creators = creators
        self.policyPath = policyPath
        self.applyPolicy = applyPolicy
        self.reloads = 0
        self.failures = 0

    def reload(self) -> None:
        """Re-read every file; log what changed, or why a file was kept."""
        self.reloads += 1
        tables: dict[str, PskTable | None] = {}
        for path, creator in self.creators:
            if path not in tables:
                tables[path] = self._loadPsk(path, creator.keys)
            table = tables[path]
            if table is not None:
                creator.replaceKeys(table)
        if self.policyPath is not None and self.applyPolicy is not None:
            try:
                policy = AuthorizationPolicy.from_file(self.policyPath)
            except PolicyError as e:
                self.failures += 1
                log.error("Reload: kept the previous policy: {error}", error=str(e))
            else:
                self.applyPolicy(policy)
                log.info(
                    "Reload: authorization policy read again from {path}", path=self.policyPath
                )

    def _loadPsk(self, path: str, old: Any) -> PskTable | None:
        try:
            table = loadPskFile(path)
        except (OSError, ValueError) as e:
            self.failures += 1
            reason = f"{path}: {e.strerror}" if isinstance(e, OSError) else str(e)
            log.error("Reload: kept the previous pre-shared keys: {error}", error=reason)
            return None
        before = dict(old) if old is not None else {}
        added = sorted(set(table) - set(before))
        removed = sorted(set(before) - set(table))
        changed = sorted(i for i in table if i in before and before[i] != table[i])
        log.info(
            "Reload: {path}: {count} identities; added {added}, removed {removed}, "
            "new key for {changed}",
            path=str(Path(path)),
            count=len(table),
            added=added or "none",
            removed=removed or "none",
            changed=changed or "none",
        )
        return table


class ReloadOnSignal(Service):
    """Runs ``reloader.reload`` in the reactor on SIGHUP while running (never stops it)."""

    def __init__(self, reloader: Reloader, reactor: Any) -> None:
        self.reloader = reloader
        self.reactor = reactor
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
        log.info("SIGHUP: reloading the pre-shared keys and the authorization policy")
        self.reactor.callFromThread(self.reloader.reload)
