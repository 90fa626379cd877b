"""Reloading a pool member without a restart: its pre-shared keys, and its load at once.

:class:`MemberReloader` re-reads the PSK file of each TLS-PSK ENRP server endpoint of a
:class:`~twisted_rserpool.poolmember.registration.MemberRegistration` when asked
(``twistd poolmember`` asks on SIGHUP through
:class:`~twisted_rserpool._reload.ReloadOnSignal`), and reads the load at once instead of
at the next interval. A file that cannot be used, or that no longer holds the identity an
endpoint offers, keeps the key in force, and one line says why; a good one gives the next
handshakes its key, and one line says whether it changed (never the key). The connection
to the home ENRP server stays up: it keeps the key it authenticated with.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.logger import Logger

from twisted_rserpool._reload import logKept, logKeysChanged, rereadPskFile
from twisted_rserpool.poolmember.registration import MemberRegistration
from twisted_rserpool.security.tls import PskClientCreator

__all__ = ["MemberReloader", "pskCreators"]

log = Logger()


def pskCreators(endpoints: Iterable[object]) -> list[PskClientCreator]:
    """The TLS-PSK client creators of ``endpoints`` whose key came from a PSK file."""
    found = []
    for endpoint in endpoints:
        creator = getattr(endpoint, "creator", None)
        if isinstance(creator, PskClientCreator) and creator.pskFile is not None:
            found.append(creator)
    return found


class MemberReloader:
    """Re-reads the PSK files of ``creators`` and the load of ``registration``.

    ``reloads`` counts the reloads, ``failures`` the files whose keys were kept.
    """

    def __init__(
        self, registration: MemberRegistration, creators: Iterable[PskClientCreator]
    ) -> None:
        self.registration = registration
        self.creators = list(creators)
        self.reloads = 0
        self.failures = 0

    def reload(self) -> None:
        """Re-read every PSK file, then the load; log what changed, or why a file was kept."""
        self.reloads += 1
        byFile: dict[str, list[PskClientCreator]] = {}
        for creator in self.creators:
            assert creator.pskFile is not None
            byFile.setdefault(creator.pskFile, []).append(creator)
        if not byFile:
            log.info("Reload: no pre-shared key file to read again")
        for path, creators in byFile.items():
            self._reloadFile(path, creators)
        self.registration.check()

    def _reloadFile(self, path: str, creators: list[PskClientCreator]) -> None:
        table = rereadPskFile(path)
        if table is None:
            self.failures += 1
            return
        missing = sorted({c.identity for c in creators if c.identity not in table})
        if missing:
            self.failures += 1
            logKept("pre-shared keys", f"{path}: no longer holds the identity {missing[0]!r}")
            return
        before = {c.identity: c.key for c in creators}
        for creator in creators:
            creator.replaceKey(table[creator.identity])
        after = {c.identity: c.key for c in creators}
        logKeysChanged(path, before, after, items="identities in use")
