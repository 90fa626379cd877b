"""Reloading an ENRP server's pre-shared keys and authorization policy without a restart.

:class:`Reloader` re-reads the PSK files of the TLS listeners and the policy file when
asked (``twistd enrp`` asks on SIGHUP through :class:`ReloadOnSignal`). A file that cannot
be used keeps what was loaded before, and the reason is logged; a good one replaces it, and
what changed is logged (identities, never keys). Connections already open keep the
identity they authenticated with; the next handshakes and decisions use the new files.
Server identifier bindings (RFC 5355 2.5) are not reloaded: they are kept from the start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.logger import Logger

from twisted_rserpool._reload import ReloadOnSignal, logKept, logKeysChanged, rereadPskFile
from twisted_rserpool.security.authorization import AuthorizationPolicy, PolicyError
from twisted_rserpool.security.psk import PskTable
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
                logKept("policy", str(e))
            else:
                self.applyPolicy(policy)
                log.info(
                    "Reload: authorization policy read again from {path}", path=self.policyPath
                )

    def _loadPsk(self, path: str, old: Any) -> PskTable | None:
        table = rereadPskFile(path)
        if table is None:
            self.failures += 1
            return None
        logKeysChanged(str(Path(path)), dict(old) if old is not None else {}, table)
        return table
