"""Server identifiers bound to PSK identities (RFC 5355 2.5 and 2.17). Sans-IO but for the file.

An ENRP server identifier belongs to one authenticated identity, and an identity has one
server identifier. The binding comes from the authorization policy (``server-identifier``
in an identity's entry) or is pinned the first time an identity announces an identifier,
and pins persist in a :class:`BindingStore` (a JSON file in the state directory for
``twistd enrp``), so neither a restart of ours nor a peer's absence frees an identifier
for someone else: an insider cannot take over a server identifier whose owner is merely
disconnected, and cannot hold several at once.

A server that needs a new identifier (or an identity that moves to another server) is
re-bound by the operator: in the policy, or by removing the pin from the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from twisted.logger import Logger

log = Logger()

#: Format version of the pin file.
_VERSION = 1


class BindingStore(Protocol):
    """Where pinned bindings (identity -> server identifier) live between restarts."""

    def load(self) -> dict[str, int]:
        """The pins saved so far."""

    def save(self, pins: Mapping[str, int]) -> None:
        """Replace the saved pins with ``pins``."""


class MemoryBindingStore:
    """Pins kept in memory only (tests, and servers without a state directory)."""

    def __init__(self, pins: Mapping[str, int] | None = None) -> None:
        self.pins: dict[str, int] = dict(pins or {})

    def load(self) -> dict[str, int]:
        """The pins saved so far."""
        return dict(self.pins)

    def save(self, pins: Mapping[str, int]) -> None:
        """Replace the saved pins with ``pins``."""
        self.pins = dict(pins)


class BindingFileError(ValueError):
    """A pin file that cannot be used, with the reason."""


class FileBindingStore:
    """Pins in a JSON file, replaced atomically (written aside, then renamed over it).

    The file is ``{"version": 1, "bindings": {"<identity>": "0x<server id>", ...}}``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, int]:
        """The pins in the file (none if it does not exist); :class:`BindingFileError` if bad."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as e:
            raise BindingFileError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            document = json.loads(text)
            bindings = document["bindings"]
            if document.get("version") != _VERSION or not isinstance(bindings, dict):
                raise ValueError("unknown format")
            pins = {str(identity): int(str(value), 0) for identity, value in bindings.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BindingFileError(f"{self.path} is not a server identifier pin file: {e}") from e
        if not all(0 < server <= 0xFFFFFFFF for server in pins.values()):
            raise BindingFileError(f"{self.path}: server identifiers are non-zero 32-bit numbers")
        return pins

    def save(self, pins: Mapping[str, int]) -> None:
        """Write ``pins`` to a temporary file in the same directory and rename it over."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = {
            "version": _VERSION,
            "bindings": {identity: f"0x{server:08x}" for identity, server in sorted(pins.items())},
        }
        fd, temporary = tempfile.mkstemp(prefix=".bindings-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class ServerIdentifierBindings:
    """Which identity may announce which server identifier.

    ``configured`` comes from the policy and is never changed here; other identities are
    pinned to the first identifier they announce, in ``store``.
    """

    def __init__(
        self, configured: Mapping[str, int] | None = None, store: BindingStore | None = None
    ) -> None:
        self.configured = dict(configured or {})
        self.store: BindingStore = store if store is not None else MemoryBindingStore()
        self._pins = self.store.load()
        self._owners = {server: identity for identity, server in self._pins.items()}
        # The policy wins over an old pin.
        for identity, server in self.configured.items():
            self._owners[server] = identity

    def owner(self, server: int) -> str | None:
        """The identity ``server`` is bound to, if any."""
        return self._owners.get(server)

    def bound(self, identity: str) -> int | None:
        """The server identifier ``identity`` is bound to, if any."""
        configured = self.configured.get(identity)
        return configured if configured is not None else self._pins.get(identity)

    def check(self, identity: str, server: int) -> str | None:
        """Why ``identity`` may not announce ``server``, or ``None`` (then it is bound)."""
        owner = self.owner(server)
        if owner is not None and owner != identity:
            how = "by the policy" if self.configured.get(owner) == server else "since first use"
            return f"0x{server:08x} is bound to identity {owner!r} {how}"
        bound = self.bound(identity)
        if bound is not None and bound != server:
            how = "by the policy" if identity in self.configured else "since first use"
            return f"identity {identity!r} is bound to 0x{bound:08x} {how}"
        if bound is None:
            self._pin(identity, server)
        return None

    def _pin(self, identity: str, server: int) -> None:
        self._pins[identity] = server
        self._owners[server] = identity
        log.info(
            "Server identifier 0x{server:08x} pinned to identity {identity!r}",
            server=server,
            identity=identity,
        )
        try:
            self.store.save(self._pins)
        except OSError:
            # The pin holds while we run; after a restart the identifier is free again.
            log.failure("Could not save the pin of 0x{server:08x}", server=server)


__all__ = [
    "BindingFileError",
    "BindingStore",
    "FileBindingStore",
    "MemoryBindingStore",
    "ServerIdentifierBindings",
]
