"""``twistd enrp``: an ENRP server (registrar) with TLS-secured ASAP listeners.

:func:`makeService` puts the server's service tree together from the parts of the
``enrp_*`` modules beside this one: the command line (:mod:`.enrp_options`), the settings
(:mod:`.enrp_config`), the state directory (:mod:`.enrp_state`), the endpoint strings it
writes (:mod:`.enrp_endpoints`), the registrar class (:mod:`.enrp_registrar`) and the
services beside the server (:mod:`.enrp_services`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_rserpool._tap.coerce import endpointFromString
from twisted_rserpool._tap.enrp_config import (
    chooseServerIdentifier,
    connectionCaps,
    loadPolicy,
    makeHandlespace,
    mappingConfig,
    peerCore,
    peerPskFile,
    registrarConfig,
)
from twisted_rserpool._tap.enrp_endpoints import (
    DEFAULT_ENRP_PORT,
    DEFAULT_PE_IDENTITY,
    DEFAULT_PORT,
    defaultAsapListener,
    listenerOption,
    outgoingEndpoints,
)
from twisted_rserpool._tap.enrp_options import (
    DEFAULT_ENRP_IDENTITY,
    SECURE_CLIENT_TYPES,
    SECURE_ENDPOINT_TYPES,
    Options,
)
from twisted_rserpool._tap.enrp_registrar import (
    checkRegistrarClass,
    registrarClassFor,
    registrarProblem,
)
from twisted_rserpool._tap.enrp_services import announcer, reloadService, serverAdminService
from twisted_rserpool._tap.enrp_state import (
    BINDINGS_FILE,
    SERVER_IDENTIFIER_FILE,
    prepareStateDirectory,
)
from twisted_rserpool.enrp.peers import PeerCore
from twisted_rserpool.enrp.registrar import Registrar
from twisted_rserpool.enrp.service import ENRPServer

log = Logger()


def makeService(
    options: Options,
    reactor: Any = None,
    *,
    registrarClass: type[Registrar] | None = None,
) -> IService:
    """The ENRP server service tree that ``options`` describes, as ``twistd enrp`` runs it.

    ``registrarClass`` is the class of the server's registrar, built as
    ``registrarClass(config, handlespace, policy)``: a
    :class:`~twisted_rserpool.enrp.Registrar` subclass whose hooks
    (``allowRegistration``, ``allowResolution``) make decisions of its own, and a
    :class:`~twisted_rserpool.enrp.TakeoverRegistrar` subclass when ``options`` peer
    (``--peer``, ``--enrp``). Default: ``--registrar``, else ``Registrar``
    (``TakeoverRegistrar`` when peering). A ``.tac`` file builds the same server as
    ``twistd enrp`` this way (``examples/custom_registrar.tac``).

    The result is the :class:`~twisted_rserpool.enrp.ENRPServer`, or, with ``--announce``
    or ``--admin``, a ``MultiService`` holding it and those services. A problem with an
    option or a file raises ``UsageError`` naming the option.
    """
    if registrarClass is not None:
        checkRegistrarClass(registrarClass, options.peering)
    if reactor is None:
        from twisted.internet import reactor as _reactor  # noqa: PLC0415

        reactor = _reactor
    clock: IReactorTime = reactor
    policy = loadPolicy(options)
    chooseServerIdentifier(options)
    config = registrarConfig(options)
    handlespace = makeHandlespace(options)
    mapping = mappingConfig(options)
    peering: PeerCore | None = None
    enrpPskFile: str | None = None
    if options.peering:
        enrpPskFile = peerPskFile(options)
        peering = peerCore(options, handlespace, policy)
    outgoing = outgoingEndpoints(reactor, options, enrpPskFile) if peering else None
    maxConnections, maxPeerConnections = connectionCaps(options, peering is not None)
    registrar = registrarClassFor(registrarClass, options["registrar"], peering is not None)
    server = ENRPServer(
        registrar(config, handlespace, policy),
        clock,
        maxConnections=maxConnections,
        maxPeerConnections=maxPeerConnections,
        handshakeTimeout=options["handshake-timeout"],
        mappingConfig=mapping,
        peering=peering,
        peerEndpointFactory=outgoing,
        peEndpointFactory=outgoing,
    )

    if options["allow-plain-psk"]:
        log.warn(
            "--allow-plain-psk: TLS 1.2 PSK suites without forward secrecy are accepted on "
            "the default listeners and offered on outgoing connections"
        )
    descriptions = list(options["asap"]) or [
        defaultAsapListener(options, *prepareStateDirectory(options))
    ]
    listeners = _listen(reactor, descriptions, listenerOption(options, "asap"), server.listenASAP)
    if peering is not None and enrpPskFile is not None:
        enrpListeners = _listen(
            reactor,
            options.enrpListeners(enrpPskFile),
            listenerOption(options, "enrp"),
            server.listenENRP,
        )
        listeners += enrpListeners
        for description in options["peer"]:
            server.addPeer(endpointFromString(clientFromString, reactor, description, "--peer"))
        log.info(
            "ENRP peering: {listeners} listener(s), {peers} configured peer(s), outgoing "
            "identity {identity!r}",
            listeners=len(enrpListeners),
            peers=len(options["peer"]),
            identity=options["enrp-identity"],
        )
    if options["insecure"]:
        log.warn(
            "INSECURE MODE: listeners without TLS and unauthenticated registrations are "
            "allowed; this ENRP server gives up every RFC 5355 defence"
        )

    reloadService(options, reactor, server, listeners).setServiceParent(server)  # type: ignore[no-untyped-call]
    services: list[IService] = []
    if options["announce"] is not None:
        services.append(announcer(options, reactor, server.serverIdentifier))
    if options["admin"] is not None:
        services.append(serverAdminService(options, reactor, server))
    if not services:
        return server
    top = MultiService()  # type: ignore[no-untyped-call]
    server.setServiceParent(top)  # type: ignore[no-untyped-call]
    for service in services:
        service.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top


def _listen(
    reactor: Any, descriptions: list[str], option: str, listen: Callable[[Any], object]
) -> list[Any]:
    """The server endpoints ``descriptions`` name, each passed to ``listen`` as it is made;
    a bad one is a ``UsageError`` naming ``option``."""
    endpoints: list[Any] = []
    for description in descriptions:
        endpoints.append(endpointFromString(serverFromString, reactor, description, option))
        listen(endpoints[-1])
    return endpoints


# The names this module has always offered, whose homes are now its parts.
__all__ = [
    "BINDINGS_FILE",
    "DEFAULT_ENRP_IDENTITY",
    "DEFAULT_ENRP_PORT",
    "DEFAULT_PE_IDENTITY",
    "DEFAULT_PORT",
    "SECURE_CLIENT_TYPES",
    "SECURE_ENDPOINT_TYPES",
    "SERVER_IDENTIFIER_FILE",
    "Options",
    "makeService",
    "registrarProblem",
]
