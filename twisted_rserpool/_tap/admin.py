"""The ``--admin`` and ``--admin-token-file`` options every ``twistd`` command shares.

:func:`adminService` binds the admin endpoint to loopback unless it names an interface
(and warns when it does not), reads or generates the bearer token (``admin.token`` in the
state directory, mode 0600), logs where it listens and which file holds the token (never
the token), and serves the site the command builds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from twisted_rserpool._admin import AdminConfigError, adminEndpoint, loadOrCreateToken

__all__ = ["ADMIN_TOKEN_FILE", "TOKEN_FILE_OPTION", "adminService"]

log = Logger()

#: The file in the state directory that keeps the admin interface's bearer token.
ADMIN_TOKEN_FILE = "admin.token"

#: The ``--admin-token-file`` row of a command's ``optParameters``.
TOKEN_FILE_OPTION: list[Any] = [
    "admin-token-file",
    None,
    None,
    f"File with the admin bearer token (default: {ADMIN_TOKEN_FILE} in the state directory, "
    "generated with mode 0600 if missing).",
]

#: Builds the admin site from the bearer token and whether reads need it (not loopback).
SiteMaker = Callable[[str, bool], Site]


def adminService(options: usage.Options, reactor: Any, makeSite: SiteMaker) -> IService:
    """The admin web site on ``options["admin"]``, with the token of ``--admin-token-file``
    or of the state directory (``options["state-dir"]``)."""
    endpoint = adminEndpoint(options["admin"])
    if options["admin-token-file"] is not None:
        tokenFile = Path(options["admin-token-file"])
    else:
        state = Path(options["state-dir"])
        try:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise usage.UsageError(f"--state-dir: {state}: {e.strerror}") from None
        tokenFile = state / ADMIN_TOKEN_FILE
    try:
        token = loadOrCreateToken(tokenFile)
    except AdminConfigError as e:
        raise usage.UsageError(f"--admin-token-file: {e}") from None
    if endpoint.loopback:
        log.info(
            "Admin interface on {endpoint}; requests that change something need the bearer "
            "token in {tokenFile}",
            endpoint=endpoint.description,
            tokenFile=str(tokenFile.absolute()),
        )
    else:
        log.warn(
            "Admin interface on {endpoint} is not on loopback ({where}): every request needs "
            "the bearer token in {tokenFile}, and it travels without TLS; prefer loopback "
            "and an SSH tunnel",
            endpoint=endpoint.description,
            where=endpoint.where,
            tokenFile=str(tokenFile.absolute()),
        )
    try:
        listening = serverFromString(reactor, endpoint.description)  # type: ignore[no-untyped-call]
    except ValueError as e:
        raise usage.UsageError(f"--admin: {e}") from None
    site = makeSite(token, not endpoint.loopback)
    return StreamServerEndpointService(listening, site)  # type: ignore[no-untyped-call]
