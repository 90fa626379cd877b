"""The state directory of ``twistd enrp`` (``--state-dir``) and the files options name.

It holds the PSK file and self-signed certificate made for the default listener when
they are missing, the server identifier a peering server generates once, and the server
identifiers pinned to peers' identities (RFC 5355 2.5). A file that cannot be read or is
unsafe is a ``UsageError`` naming its option.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from twisted.logger import Logger
from twisted.python import usage

from twisted_rserpool._tap.enrp_endpoints import DEFAULT_PE_IDENTITY
from twisted_rserpool._tap.enrp_options import Options, parseServerIdentifier
from twisted_rserpool.enrp.bindings import (
    BindingFileError,
    FileBindingStore,
    ServerIdentifierBindings,
)
from twisted_rserpool.security.authorization import AuthorizationPolicy

__all__ = [
    "BINDINGS_FILE",
    "SERVER_IDENTIFIER_FILE",
    "checkFile",
    "makeStateDirectory",
    "persistentServerIdentifier",
    "prepareStateDirectory",
    "serverIdentifierBindings",
]

log = Logger(namespace="twisted_rserpool._tap.enrp")  # the command's namespace

#: The file in the state directory that keeps this server's generated identifier.
SERVER_IDENTIFIER_FILE = "server-id"
#: The file in the state directory that pins ENRP server identifiers to identities.
BINDINGS_FILE = "server-identifiers.json"


def prepareStateDirectory(options: Options) -> tuple[str, str, str]:
    """The PSK file, certificate and key to use, creating missing ones in the state directory."""
    from twisted_rserpool.security.certificates import createSelfSignedCertificate  # noqa: PLC0415
    from twisted_rserpool.security.psk import createPskFile  # noqa: PLC0415

    state = Path(options["state-dir"])
    makeStateDirectory(state)
    pskFile = options["psk-file"] or str(state / "keys.psk")
    if options["psk-file"] is None and not os.path.exists(pskFile):
        createPskFile(pskFile, DEFAULT_PE_IDENTITY)
        log.info(
            "Created PSK file {path} with identity {identity!r}",
            path=pskFile,
            identity=DEFAULT_PE_IDENTITY,
        )
    certificate = options["certificate"] or str(state / "server.pem")
    privateKey = options["private-key"] or (
        str(state / "server.key") if options["certificate"] is None else certificate
    )
    if options["certificate"] is None and not os.path.exists(certificate):
        createSelfSignedCertificate(certificate, privateKey)
        log.info(
            "Created self-signed certificate {path} (localhost, 127.0.0.1, ::1)", path=certificate
        )
    checkFile("--psk-file", pskFile, psk=True)
    checkFile("--certificate", certificate)
    checkFile("--private-key", privateKey)
    return pskFile, certificate, privateKey


def makeStateDirectory(state: Path) -> None:
    """Create the state directory (mode 0700), or a UsageError naming --state-dir."""
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise usage.UsageError(f"--state-dir: {e}") from None


def checkFile(option: str, path: str, psk: bool = False) -> None:
    """A UsageError naming ``option`` if ``path`` cannot be read (or, a PSK file, is unsafe)."""
    from twisted_rserpool.security.psk import loadPskFile  # noqa: PLC0415

    try:
        if psk:
            loadPskFile(path)
        else:
            with open(path, "rb"):
                pass
    except OSError as e:
        raise usage.UsageError(f"{option}: {path}: {e.strerror or e}") from None
    except ValueError as e:  # PskFileError: its message names the file
        raise usage.UsageError(f"{option}: {e}") from None


def persistentServerIdentifier(state: Path) -> int:
    """This server's identifier from the state directory, generated and kept on first use."""
    path = state / SERVER_IDENTIFIER_FILE
    try:
        return parseServerIdentifier(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, usage.UsageError) as e:
        raise usage.UsageError(f"{path}: {e}") from None
    identifier = secrets.randbelow(0xFFFFFFFF) + 1
    makeStateDirectory(state)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(f"0x{identifier:08x}\n")
        os.replace(temporary, path)
    except OSError as e:
        raise usage.UsageError(f"--state-dir: cannot keep the server identifier: {e}") from None
    log.info(
        "Server identifier 0x{server:08x} generated and kept in {path}",
        server=identifier,
        path=str(path),
    )
    return identifier


def serverIdentifierBindings(
    options: Options, policy: AuthorizationPolicy
) -> ServerIdentifierBindings:
    """The policy's server identifiers, and the pins of the state directory (RFC 5355 2.5)."""
    store = FileBindingStore(Path(options["state-dir"]) / BINDINGS_FILE)
    try:
        return ServerIdentifierBindings(policy.server_identifiers(), store)
    except BindingFileError as e:
        raise usage.UsageError(str(e)) from e
