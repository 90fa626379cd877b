"""The services ``twistd enrp`` runs beside the ENRP server: reloading on SIGHUP, the
admin interface (``--admin``) and the server announcements (``--announce``)."""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from twisted_rserpool._tap.admin import adminService
from twisted_rserpool._tap.enrp_endpoints import DEFAULT_PORT
from twisted_rserpool._tap.enrp_options import Options
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.security.authorization import AuthorizationPolicy

__all__ = ["announcer", "reloadService", "serverAdminService"]


def reloadService(
    options: Options, reactor: Any, server: ENRPServer, listeners: list[Any]
) -> IService:
    """SIGHUP re-reads the listeners' PSK files and --policy (a bad file keeps the old)."""
    from twisted_rserpool.enrp.reload import Reloader, ReloadOnSignal  # noqa: PLC0415
    from twisted_rserpool.security.psk import PskTable  # noqa: PLC0415
    from twisted_rserpool.security.tls import TlsServerCreator  # noqa: PLC0415

    creators: list[tuple[str, TlsServerCreator]] = []
    for listener in listeners:
        creator = getattr(listener, "creator", None)
        if not isinstance(creator, TlsServerCreator):
            continue
        keys = creator.keys
        if isinstance(keys, PskTable) and keys.path is not None:
            creators.append((keys.path, creator))

    def applyPolicy(policy: AuthorizationPolicy) -> None:
        server.registrar.policy = policy
        if server.peering is not None:
            server.peering.policy = policy
            server.peering.table.policy = policy

    return ReloadOnSignal(
        Reloader(creators, options["policy"], applyPolicy),
        reactor,
        "the pre-shared keys and the authorization policy",
    )


def serverAdminService(options: Options, reactor: Any, server: ENRPServer) -> IService:
    """The admin web site on --admin: loopback by default, the token from the state directory."""
    from twisted_rserpool.enrp.admin import adminSite  # noqa: PLC0415

    def makeSite(token: str, remote: bool) -> Any:
        return adminSite(server, token, tokenForReads=remote)

    return adminService(options, reactor, makeSite)


def announcer(options: Options, reactor: Any, serverIdentifier: int) -> IService:
    """The ASAP_SERVER_ANNOUNCE sender the --announce options describe."""
    from ipaddress import ip_address  # noqa: PLC0415

    from twisted_rserpool.enrp.announce import (  # noqa: PLC0415
        ServerAnnouncer,
        parseAnnounceAddress,
    )
    from twisted_rserpool.wire.parameters import TcpTransport  # noqa: PLC0415

    try:
        destination = parseAnnounceAddress(options["announce"])
        announced = options["announce-transport"]
        if announced is None:
            if options["asap"]:
                raise ValueError("give --announce-transport with --asap listeners")
            announced = f"127.0.0.1:{DEFAULT_PORT}"
        host, port = parseAnnounceAddress(announced, defaultPort=None)
        transport = TcpTransport(port, ip_address(host))
        interval = float(options["announce-interval"])
        if interval <= 0:
            raise ValueError("--announce-interval must be positive")
        return ServerAnnouncer(
            reactor,
            reactor,
            serverIdentifier,
            [transport],
            destination,
            interval=interval,
            interface=options["announce-interface"],
        )
    except ValueError as e:
        raise usage.UsageError(str(e)) from e
