"""``twistd enrp``: an ENRP server (registrar) with TLS-secured ASAP listeners."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, ClassVar

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python import usage

from twisted_rserpool._tap.admin import TOKEN_FILE_OPTION, adminService
from twisted_rserpool._tap.classes import namedSubclass
from twisted_rserpool._tap.coerce import endpointFromString
from twisted_rserpool.enrp.bindings import (
    BindingFileError,
    FileBindingStore,
    ServerIdentifierBindings,
)
from twisted_rserpool.enrp.peers import PeerConfig, PeerCore
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig
from twisted_rserpool.enrp.service import ENRPServer
from twisted_rserpool.enrp.takeover import TakeoverRegistrar
from twisted_rserpool.handlespace import Handlespace, HandlespaceLimits
from twisted_rserpool.security.authorization import AuthorizationPolicy, PolicyError
from twisted_rserpool.security.ratelimit import Rate
from twisted_rserpool.transport.connection import MappingConfig

log = Logger()

#: Endpoint types that run TLS (RFC 5355 2.15: a secure server listens on nothing else).
SECURE_ENDPOINT_TYPES = ("tlspsk", "ssl")
#: Client endpoint types that run TLS (for --peer).
SECURE_CLIENT_TYPES = ("tlspsk", "tls")
DEFAULT_PORT = 3864  # ASAP over TLS (IANA)
DEFAULT_ENRP_PORT = 9902  # ENRP over TLS (IANA)
DEFAULT_ENRP_IDENTITY = "enrp"
DEFAULT_PE_IDENTITY = "pe"


def _rate(value: str) -> Rate:
    """``RATE`` or ``RATE/BURST`` (events per second, burst size)."""
    try:
        if "/" in value:
            rate, burst = value.split("/", 1)
            return Rate(float(rate), float(burst))
        return Rate(float(value), max(1.0, float(value)))
    except ValueError as e:
        raise usage.UsageError(f"bad rate {value!r}: {e} (use RATE or RATE/BURST)") from e


def _serverIdentifier(value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError as e:
        raise usage.UsageError(f"bad server identifier {value!r}") from e
    if not 0 < number <= 0xFFFFFFFF:
        raise usage.UsageError("the server identifier is a non-zero 32-bit number")
    return number


class Options(usage.Options):
    """Command line of ``twistd enrp``."""

    synopsis = "[options]"
    longdesc = (
        "Runs an ENRP server (RFC 5353) that serves ASAP (RFC 5352) to pool elements and "
        "pool users over TLS: pool elements authenticate with pre-shared keys, pool users "
        "authenticate the server by its certificate (RFC 5355). With no options it listens "
        "on 127.0.0.1:3864, creates a PSK file and a self-signed certificate in the state "
        "directory if they are missing, and logs how pool elements and pool users connect."
    )

    optParameters: ClassVar[list[list[Any]]] = [
        [
            "server-id",
            None,
            None,
            "This server's identifier (32 bits, e.g. 0x1234). Unset: random, and with peers "
            "generated once and kept in the state directory (peers bind it to our identity).",
        ],
        ["state-dir", None, "enrp-state", "Directory for the generated PSK file and certificate."],
        [
            "psk-file",
            None,
            None,
            "PSK file (identity:hexkey per line, mode 0600) for the default listener.",
        ],
        [
            "certificate",
            None,
            None,
            "PEM certificate (with chain) the default listener presents to pool users.",
        ],
        [
            "private-key",
            None,
            None,
            "PEM private key of --certificate (default: the certificate file).",
        ],
        [
            "policy",
            None,
            None,
            "Authorization policy (TOML): identities, roles, pools, limits. "
            "Default: every authenticated identity may do everything.",
        ],
        [
            "keep-alive-interval",
            None,
            "5",
            "Seconds between ASAP_ENDPOINT_KEEP_ALIVEs to each owned PE (+/- 50 %).",
        ],
        [
            "keep-alive-timeout",
            None,
            "5",
            "Seconds a PE has to answer a keep-alive before it is removed.",
        ],
        [
            "max-bad-pe-report",
            None,
            "3",
            "MAX-BAD-PE-REPORT: distinct reporters after which a PE is probed with a "
            "keep-alive (and removed only if it does not answer).",
        ],
        [
            "unreachable-report-window",
            None,
            "30",
            "Seconds in which one pool user's unreachable reports of a PE count once.",
        ],
        ["max-registration-life", None, "3600", "Longest registration life granted, in seconds."],
        [
            "handle-resolution-items",
            None,
            "128",
            "PEs per handle resolution answer unless the PU asks (max 128; the default "
            "lists all of a pool up to 128, as RFC 5352 3.3 says; RSPLIB answers 3).",
        ],
        [
            "request-rate",
            None,
            "200/400",
            "ASAP requests per connection: RATE[/BURST] per second. Beyond it the "
            "connection is not read until its next request is due (none is dropped).",
        ],
        [
            "identity-rate",
            None,
            "500/1000",
            "ASAP requests per authenticated identity, over all its connections: RATE[/BURST].",
        ],
        [
            "anonymous-rate",
            None,
            "500/1000",
            "ASAP requests of all unauthenticated connections together: RATE[/BURST].",
        ],
        [
            "unreachable-rate",
            None,
            "1/5",
            "ASAP_ENDPOINT_UNREACHABLE reports per pool user: RATE[/BURST].",
        ],
        [
            "keep-alive-rate",
            None,
            "1/3",
            "Keep-alives to any one PE: RATE[/BURST] (RFC 5355 2.14).",
        ],
        [
            "max-connections",
            None,
            "10000",
            "Most ASAP connections open at once; more are closed at accept. Lowered (with "
            "a warning) if the file descriptor limit cannot hold it.",
        ],
        [
            "max-peer-connections",
            None,
            "64",
            "Most incoming ENRP connections open at once (all --enrp listeners); more are "
            "closed at accept.",
        ],
        [
            "handshake-timeout",
            None,
            "5",
            "Seconds a new connection (ASAP or ENRP) has to complete its TLS handshake and "
            "TCP-mapping INIT; then it is closed.",
        ],
        ["max-pools", None, "10000", "Most pools in the handlespace."],
        ["max-pool-elements-per-pool", None, "10000", "Most PEs in one pool."],
        ["max-pool-elements-per-identity", None, "1000", "Most PEs one identity may register."],
        ["heartbeat-interval", None, "15", "Seconds of silence before a TCP-mapping HEARTBEAT."],
        [
            "heartbeat-timeout",
            None,
            "10",
            "Seconds to answer a HEARTBEAT before the connection is closed.",
        ],
        [
            "announce",
            None,
            None,
            "Send ASAP_SERVER_ANNOUNCE to HOST[:PORT] or [IPV6]:PORT (e.g. the ASAP groups "
            "224.0.1.185 and ff02::133; off by default). Announcements are hints: clients "
            "still authenticate the server.",
        ],
        ["announce-interval", None, "2", "Seconds between server announcements."],
        [
            "announce-interface",
            None,
            "",
            "Local address to send announcements from, or, for an IPv6 group, the name or "
            "index of the interface to send them on (e.g. eth0).",
        ],
        [
            "announce-transport",
            None,
            None,
            "HOST:PORT or [IPV6]:PORT announced as this server's ASAP transport (default: "
            "the default listener 127.0.0.1:3864).",
        ],
        [
            "admin",
            None,
            None,
            "Endpoint of the admin interface (JSON, HTML status page, Prometheus /metrics), "
            "e.g. tcp:8864. Bound to 127.0.0.1 unless it names an interface; off loopback "
            "every request needs the bearer token.",
        ],
        TOKEN_FILE_OPTION,
        [
            "peer-heartbeat-cycle",
            None,
            "2.4",
            "PEER-HEARTBEAT-CYCLE: seconds between ENRP_PRESENCE announcements to each peer "
            "(RFC 5353 says 30, RSPLIB about 2.4).",
        ],
        [
            "max-time-last-heard",
            None,
            "5",
            "MAX-TIME-LAST-HEARD: seconds of silence after which a peer is probed "
            "(RFC 5353 says 61, RSPLIB 5).",
        ],
        [
            "max-time-no-response",
            None,
            "5",
            "MAX-TIME-NO-RESPONSE: seconds a probed peer has to answer before it is "
            "declared dead and taken over; also the wait for list and table responses.",
        ],
        [
            "takeover-expiry",
            None,
            "5",
            "Seconds a takeover waits for every other peer's ENRP_INIT_TAKEOVER_ACK.",
        ],
        [
            "mentor-discovery",
            None,
            "5",
            "Seconds to find a mentor among the --peer servers before serving alone.",
        ],
        [
            "home-keep-alive-rate",
            None,
            "100/100",
            "ASAP_ENDPOINT_KEEP_ALIVEs with the H flag to PEs taken over: RATE[/BURST].",
        ],
        [
            "enrp-identity",
            None,
            DEFAULT_ENRP_IDENTITY,
            "This server's own PSK identity for the connections it opens to PEs it takes "
            "over and to peers named by other peers (it needs the enrp-server role there).",
        ],
        [
            "enrp-psk-file",
            None,
            None,
            "PSK file holding --enrp-identity's key (default: --psk-file or the state "
            "directory's keys.psk).",
        ],
        [
            "registrar",
            None,
            None,
            "The registrar class as package.module.Class: a subclass of "
            "twisted_rserpool.enrp.Registrar (of TakeoverRegistrar with --peer or --enrp) "
            "with decisions of its own, such as allowRegistration; built as "
            "Class(config, handlespace, policy). Default: Registrar, TakeoverRegistrar "
            "when peering (docs/developer.md).",
        ],
    ]
    optFlags: ClassVar[list[list[Any]]] = [
        [
            "insecure",
            None,
            "Allow listeners without TLS and unauthenticated registrations. "
            "This gives up every RFC 5355 defence; for tests and RSPLIB-style labs only.",
        ],
        [
            "no-anonymous-pool-users",
            None,
            "Refuse handle resolution from pool users without an "
            "authenticated identity (by default TLS with a server certificate is enough).",
        ],
        [
            "allow-plain-psk",
            None,
            "Also accept (and offer) TLS 1.2 PSK suites without forward secrecy, such as "
            "PSK-AES128-GCM-SHA256, on the listeners and connections this command builds "
            "itself; in --asap, --enrp and --peer strings write allowPlainPsk=yes instead. "
            "A key that leaks then decrypts every recorded session (docs/security-tls.md).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["asap"] = []
        self["enrp"] = []
        self["peer"] = []

    def opt_asap(self, description: str) -> None:
        """An ASAP listener endpoint (repeatable), e.g.
        tlspsk:3864:interface=127.0.0.1:pskFile=keys.psk:certificate=server.pem.
        Default: tlspsk on 127.0.0.1:3864 with the state directory's key and certificate."""
        self["asap"].append(description)

    def opt_enrp(self, description: str) -> None:
        """An ENRP listener endpoint for peer ENRP servers (repeatable), e.g.
        tlspsk:9902:interface=127.0.0.1:pskFile=keys.psk. Default: none, or tlspsk on
        127.0.0.1:9902 when --peer is given."""
        self["enrp"].append(description)

    def opt_peer(self, description: str) -> None:
        """A peer ENRP server's client endpoint (repeatable), e.g.
        tlspsk:host=10.0.0.2:port=9902:identity=enrp-1:pskFile=keys.psk. The first to
        answer is the mentor; connections are retried with backoff."""
        self["peer"].append(description)

    @property
    def peering(self) -> bool:
        """Whether this server joins an ENRP server pool."""
        return bool(self["enrp"] or self["peer"])

    def enrpListeners(self, pskFile: str) -> list[str]:
        """The ENRP listener descriptions, with the default when only --peer is given."""
        if self["enrp"] or not self["peer"]:
            return list(self["enrp"])
        return [
            f"tlspsk:{DEFAULT_ENRP_PORT}:interface=127.0.0.1:pskFile={_escape(pskFile)}"
            + _plainPsk(self)
        ]

    def postOptions(self) -> None:
        """Check values and the security rules that need no files."""
        # Unset: chosen in makeService (kept in the state directory when peering, where
        # peers pin it to our identity and a new one would be refused).
        if self["server-id"] is not None:
            self["server-id"] = _serverIdentifier(self["server-id"])
        for name in (
            "request-rate",
            "identity-rate",
            "anonymous-rate",
            "unreachable-rate",
            "keep-alive-rate",
            "home-keep-alive-rate",
        ):
            try:
                self[name] = _rate(self[name])
            except usage.UsageError as e:
                raise usage.UsageError(f"--{name}: {e}") from None
        name = ""
        try:
            for name in (
                "keep-alive-interval",
                "keep-alive-timeout",
                "heartbeat-interval",
                "heartbeat-timeout",
                "peer-heartbeat-cycle",
                "max-time-last-heard",
                "max-time-no-response",
                "takeover-expiry",
                "mentor-discovery",
                "handshake-timeout",
                "unreachable-report-window",
            ):
                self[name] = float(self[name])
                if self[name] <= 0:
                    raise ValueError(f"--{name} must be positive")
            for name in (
                "max-bad-pe-report",
                "max-registration-life",
                "handle-resolution-items",
                "max-connections",
                "max-peer-connections",
                "max-pools",
                "max-pool-elements-per-pool",
                "max-pool-elements-per-identity",
            ):
                self[name] = int(self[name])
                if self[name] <= 0:
                    raise ValueError(f"--{name} must be positive")
        except ValueError as e:
            message = str(e)
            if not message.startswith("--"):
                message = f"--{name}: {message}"
            raise usage.UsageError(message) from None
        if not self["insecure"]:
            for description in self["asap"] + self["enrp"]:
                kind = description.split(":", 1)[0].strip().lower()
                if kind not in SECURE_ENDPOINT_TYPES:
                    raise usage.UsageError(
                        f"listener {description!r} is not TLS: a secure ENRP server listens "
                        "only with tlspsk: or ssl: (RFC 5355 section 2.15); use --insecure "
                        "to allow it"
                    )
            for description in self["peer"]:
                kind = description.split(":", 1)[0].strip().lower()
                if kind not in SECURE_CLIENT_TYPES:
                    raise usage.UsageError(
                        f"peer {description!r} is not TLS: a secure ENRP server accepts no "
                        "update from a peer without TLS (RFC 5355 section 2.15); use "
                        "--insecure to allow it"
                    )
        if self["registrar"] is not None:
            chosen = namedSubclass("--registrar", self["registrar"], Registrar)
            problem = registrarProblem(chosen, self.peering)
            if problem is not None:
                raise usage.UsageError(f"--registrar: {self['registrar']}: {problem}")
            self["registrar"] = chosen


def _prepareStateDirectory(options: Options) -> tuple[str, str, str]:
    """The PSK file, certificate and key to use, creating missing ones in the state directory."""
    from twisted_rserpool.security.certificates import createSelfSignedCertificate  # noqa: PLC0415
    from twisted_rserpool.security.psk import createPskFile  # noqa: PLC0415

    state = Path(options["state-dir"])
    _makeStateDirectory(state)
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
    _checkFile("--psk-file", pskFile, psk=True)
    _checkFile("--certificate", certificate)
    _checkFile("--private-key", privateKey)
    return pskFile, certificate, privateKey


def _makeStateDirectory(state: Path) -> None:
    """Create the state directory (mode 0700), or a UsageError naming --state-dir."""
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise usage.UsageError(f"--state-dir: {e}") from None


def _checkFile(option: str, path: str, psk: bool = False) -> None:
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


def registrarProblem(registrarClass: type[Registrar], peering: bool) -> str | None:
    """Why ``registrarClass`` cannot be the registrar of a server that (not) peers, or None."""
    if issubclass(registrarClass, TakeoverRegistrar) or not peering:
        return None
    return (
        "not a subclass of twisted_rserpool.enrp.TakeoverRegistrar, which a server with "
        "--peer or --enrp needs (it admits the pool elements it takes over)"
    )


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
        problem = registrarProblem(registrarClass, options.peering)
        if problem is not None:
            raise TypeError(f"registrarClass {registrarClass.__qualname__}: {problem}")
    if reactor is None:
        from twisted.internet import reactor as _reactor  # noqa: PLC0415

        reactor = _reactor
    clock: IReactorTime = reactor
    try:
        policy = (
            AuthorizationPolicy.from_file(options["policy"])
            if options["policy"] is not None
            else AuthorizationPolicy()
        )
    except PolicyError as e:
        raise usage.UsageError(f"--policy: {e}") from None

    if options["server-id"] is None:
        options["server-id"] = (
            _persistentServerIdentifier(Path(options["state-dir"]))
            if options.peering
            else secrets.randbelow(0xFFFFFFFF) + 1
        )
    config = RegistrarConfig(
        server_identifier=options["server-id"],
        secure=not options["insecure"],
        anonymous_pool_users=not options["no-anonymous-pool-users"],
        keep_alive_interval=options["keep-alive-interval"],
        keep_alive_timeout=options["keep-alive-timeout"],
        max_bad_pe_report=options["max-bad-pe-report"],
        unreachable_report_window=options["unreachable-report-window"],
        handle_resolution_items=min(options["handle-resolution-items"], 128),
        max_registration_life=options["max-registration-life"],
        request_rate=options["request-rate"],
        identity_rate=options["identity-rate"],
        anonymous_rate=options["anonymous-rate"],
        unreachable_rate=options["unreachable-rate"],
        keep_alive_rate=options["keep-alive-rate"],
    )
    handlespace = Handlespace(
        HandlespaceLimits(
            max_pools=options["max-pools"],
            max_elements_per_pool=options["max-pool-elements-per-pool"],
            max_elements_per_identity=options["max-pool-elements-per-identity"],
        )
    )
    mapping = MappingConfig(
        heartbeat_interval=options["heartbeat-interval"],
        heartbeat_timeout=options["heartbeat-timeout"],
    )
    peering: PeerCore | None = None
    enrpPskFile: str | None = None
    if options.peering:
        enrpPskFile = options["enrp-psk-file"] or options["psk-file"]
        if options["enrp-psk-file"] is not None:
            _checkFile("--enrp-psk-file", options["enrp-psk-file"], psk=True)
        if enrpPskFile is None:
            enrpPskFile, _, _ = _prepareStateDirectory(options)
        peering = PeerCore(
            PeerConfig(
                server_identifier=options["server-id"],
                secure=not options["insecure"],
                peer_heartbeat_cycle=options["peer-heartbeat-cycle"],
                max_time_last_heard=options["max-time-last-heard"],
                max_time_no_response=options["max-time-no-response"],
                takeover_expiry=options["takeover-expiry"],
                mentor_discovery=options["mentor-discovery"],
                home_keep_alive_rate=options["home-keep-alive-rate"],
                keep_alive_timeout=options["keep-alive-timeout"],
            ),
            handlespace,
            policy,
            expect_mentor=bool(options["peer"]),
            bindings=_serverIdentifierBindings(options, policy),
        )
    outgoing = _outgoingEndpoints(reactor, options, enrpPskFile) if peering else None
    maxConnections, maxPeerConnections = _descriptorBudget(options, peering is not None)
    if registrarClass is None:
        registrarClass = options["registrar"] or (
            TakeoverRegistrar if peering is not None else Registrar
        )
    if registrarClass not in (Registrar, TakeoverRegistrar):
        log.info(
            "Registrar class {registrar}",
            registrar=f"{registrarClass.__module__}.{registrarClass.__qualname__}",
        )
    server = ENRPServer(
        registrarClass(config, handlespace, policy),
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
    descriptions = list(options["asap"])
    if not descriptions:
        pskFile, certificate, privateKey = _prepareStateDirectory(options)
        descriptions = [
            f"tlspsk:{DEFAULT_PORT}:interface=127.0.0.1:pskFile={_escape(pskFile)}"
            f":certificate={_escape(certificate)}:privateKey={_escape(privateKey)}"
            + _plainPsk(options)
        ]
        log.info(
            "A pool element connects with: tlspsk:host=127.0.0.1:port={port}:identity="
            "{identity}:pskFile={psk}",
            port=DEFAULT_PORT,
            identity=DEFAULT_PE_IDENTITY,
            psk=pskFile,
        )
        log.info(
            "A pool user connects with: tlspsk:host=127.0.0.1:port={port}:caCertificate="
            "{certificate}",
            port=DEFAULT_PORT,
            certificate=certificate,
        )
    listeners: list[Any] = []
    for description in descriptions:
        listeners.append(
            endpointFromString(serverFromString, reactor, description, _option(options, "asap"))
        )
        server.listenASAP(listeners[-1])
    if peering is not None and enrpPskFile is not None:
        for description in options.enrpListeners(enrpPskFile):
            listeners.append(
                endpointFromString(serverFromString, reactor, description, _option(options, "enrp"))
            )
            server.listenENRP(listeners[-1])
        for description in options["peer"]:
            server.addPeer(endpointFromString(clientFromString, reactor, description, "--peer"))
        log.info(
            "ENRP peering: {listeners} listener(s), {peers} configured peer(s), outgoing "
            "identity {identity!r}",
            listeners=len(options.enrpListeners(enrpPskFile)),
            peers=len(options["peer"]),
            identity=options["enrp-identity"],
        )
    if options["insecure"]:
        log.warn(
            "INSECURE MODE: listeners without TLS and unauthenticated registrations are "
            "allowed; this ENRP server gives up every RFC 5355 defence"
        )

    _reloadService(options, reactor, server, listeners).setServiceParent(server)  # type: ignore[no-untyped-call]
    services: list[IService] = []
    if options["announce"] is not None:
        services.append(_announcer(options, reactor, server.serverIdentifier))
    if options["admin"] is not None:
        services.append(_adminService(options, reactor, server))
    if not services:
        return server
    top = MultiService()  # type: ignore[no-untyped-call]
    server.setServiceParent(top)  # type: ignore[no-untyped-call]
    for service in services:
        service.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top


def _option(options: Options, name: str) -> str:
    """The option(s) a listener comes from: --NAME, or the files of the default one."""
    if options[name]:
        return f"--{name}"
    if name == "asap":
        return "--psk-file/--certificate"
    return "--enrp-psk-file/--psk-file"


def _reloadService(
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


def _adminService(options: Options, reactor: Any, server: ENRPServer) -> IService:
    """The admin web site on --admin: loopback by default, the token from the state directory."""
    from twisted_rserpool.enrp.admin import adminSite  # noqa: PLC0415

    def makeSite(token: str, remote: bool) -> Any:
        return adminSite(server, token, tokenForReads=remote)

    return adminService(options, reactor, makeSite)


def _descriptorBudget(options: Options, peering: bool) -> tuple[int, int]:
    """The ASAP and ENRP connection caps this process's RLIMIT_NOFILE can hold.

    The soft limit is raised (up to the hard one) when the caps need it; if even the hard
    limit is too small the caps are lowered with a warning, and if it cannot hold
    MINIMUM_CONNECTIONS the server does not start (one line on stderr, no traceback).
    The reserve covers the server's other descriptors: files, listeners, the admin
    interface, the outgoing peer connections and a burst of H keep-alive connections.
    """
    from twisted_rserpool.transport.admission import (  # noqa: PLC0415
        DESCRIPTOR_RESERVE,
        DescriptorLimitError,
        applyDescriptorLimit,
    )

    wantedPeers = options["max-peer-connections"] if peering else 0
    reserve = DESCRIPTOR_RESERVE + len(options["asap"]) + len(options["enrp"])
    if peering:
        reserve += len(options["peer"]) + int(options["home-keep-alive-rate"].burst)
    try:
        budget, soft = applyDescriptorLimit(
            options["max-connections"], wantedPeers, reserve=reserve
        )
    except DescriptorLimitError as e:
        raise SystemExit(f"twistd enrp: cannot start: {e}") from None
    if budget.softLimit > soft:
        log.info(
            "Raised the file descriptor limit (RLIMIT_NOFILE) from {old} to {new} for "
            "the connection caps",
            old=soft,
            new=budget.softLimit,
        )
    if budget.lowered:
        log.warn(
            "The file descriptor limit (RLIMIT_NOFILE {limit}) cannot hold the connection "
            "caps: --max-connections lowered from {asked} to {connections}"
            + (", --max-peer-connections from {askedPeers} to {peers}" if peering else "")
            + " ({reserve} descriptors kept in reserve); raise the limit (ulimit -n) to "
            "serve more",
            limit=budget.softLimit,
            asked=options["max-connections"],
            connections=budget.maxConnections,
            askedPeers=wantedPeers,
            peers=budget.maxPeerConnections,
            reserve=reserve,
        )
    return budget.maxConnections, budget.maxPeerConnections or options["max-peer-connections"]


#: The file in the state directory that keeps this server's generated identifier.
SERVER_IDENTIFIER_FILE = "server-id"


def _persistentServerIdentifier(state: Path) -> int:
    """This server's identifier from the state directory, generated and kept on first use."""
    path = state / SERVER_IDENTIFIER_FILE
    try:
        return _serverIdentifier(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, usage.UsageError) as e:
        raise usage.UsageError(f"{path}: {e}") from None
    identifier = secrets.randbelow(0xFFFFFFFF) + 1
    _makeStateDirectory(state)
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


#: The file in the state directory that pins ENRP server identifiers to identities.
BINDINGS_FILE = "server-identifiers.json"


def _serverIdentifierBindings(
    options: Options, policy: AuthorizationPolicy
) -> ServerIdentifierBindings:
    """The policy's server identifiers, and the pins of the state directory (RFC 5355 2.5)."""
    store = FileBindingStore(Path(options["state-dir"]) / BINDINGS_FILE)
    try:
        return ServerIdentifierBindings(policy.server_identifiers(), store)
    except BindingFileError as e:
        raise usage.UsageError(str(e)) from e


def _announcer(options: Options, reactor: Any, serverIdentifier: int) -> IService:
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


def _outgoingEndpoints(reactor: Any, options: Options, pskFile: str | None) -> Any:
    """Client endpoints to PEs we take over and to peers named by peers (TLS-PSK as us)."""

    def build(host: str, port: int) -> IStreamClientEndpoint:
        if options["insecure"] and pskFile is None:
            return clientFromString(reactor, f"tcp:host={host}:port={port}")  # type: ignore[no-untyped-call,no-any-return]
        return clientFromString(  # type: ignore[no-untyped-call,no-any-return]
            reactor,
            f"tlspsk:host={host}:port={port}:identity={_escape(options['enrp-identity'])}"
            f":pskFile={_escape(pskFile or '')}" + _plainPsk(options),
        )

    return build


def _plainPsk(options: Options) -> str:
    """The endpoint string option that --allow-plain-psk adds to the strings built here."""
    return ":allowPlainPsk=yes" if options["allow-plain-psk"] else ""


def _escape(path: str) -> str:
    """A path as an endpoint string value (colons and backslashes escaped)."""
    return path.replace("\\", "\\\\").replace(":", "\\:")


__all__ = ["Options", "makeService"]
