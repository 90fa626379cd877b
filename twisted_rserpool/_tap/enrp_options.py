"""The command line of ``twistd enrp``: its options, their help, and the checks that need
no files (values, the TLS-only rule of RFC 5355 2.15, the ``--registrar`` class)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from twisted.python import usage

from twisted_rserpool._tap.admin import TOKEN_FILE_OPTION
from twisted_rserpool._tap.enrp_endpoints import DEFAULT_ENRP_PORT, localListener
from twisted_rserpool._tap.enrp_registrar import namedRegistrar
from twisted_rserpool.security.ratelimit import Rate

__all__ = [
    "DEFAULT_ENRP_IDENTITY",
    "SECURE_CLIENT_TYPES",
    "SECURE_ENDPOINT_TYPES",
    "Options",
    "parseRate",
    "parseServerIdentifier",
]

#: Endpoint types that run TLS (RFC 5355 2.15: a secure server listens on nothing else).
SECURE_ENDPOINT_TYPES = ("tlspsk", "ssl")
#: Client endpoint types that run TLS (for --peer).
SECURE_CLIENT_TYPES = ("tlspsk", "tls")
DEFAULT_ENRP_IDENTITY = "enrp"

#: The options that are rates, RATE[/BURST].
_RATES = (
    "request-rate",
    "identity-rate",
    "anonymous-rate",
    "unreachable-rate",
    "keep-alive-rate",
    "home-keep-alive-rate",
)
#: The options that are positive numbers: seconds, then counts.
_POSITIVE: tuple[tuple[Callable[[str], float], tuple[str, ...]], ...] = (
    (
        float,
        (
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
        ),
    ),
    (
        int,
        (
            "max-bad-pe-report",
            "max-registration-life",
            "handle-resolution-items",
            "max-connections",
            "max-peer-connections",
            "max-pools",
            "max-pool-elements-per-pool",
            "max-pool-elements-per-identity",
        ),
    ),
)


def parseRate(value: str) -> Rate:
    """``RATE`` or ``RATE/BURST`` (events per second, burst size)."""
    try:
        if "/" in value:
            rate, burst = value.split("/", 1)
            return Rate(float(rate), float(burst))
        return Rate(float(value), max(1.0, float(value)))
    except ValueError as e:
        raise usage.UsageError(f"bad rate {value!r}: {e} (use RATE or RATE/BURST)") from e


def parseServerIdentifier(value: str) -> int:
    """A server identifier: a non-zero 32-bit number, such as 0x1234."""
    try:
        number = int(value, 0)
    except ValueError as e:
        raise usage.UsageError(f"bad server identifier {value!r}") from e
    if not 0 < number <= 0xFFFFFFFF:
        raise usage.UsageError("the server identifier is a non-zero 32-bit number")
    return number


def _notTls(descriptions: list[str], kinds: tuple[str, ...]) -> str | None:
    """The first of ``descriptions`` whose endpoint type is none of ``kinds``, or None."""
    for description in descriptions:
        if description.split(":", 1)[0].strip().lower() not in kinds:
            return description
    return None


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
        return [localListener(DEFAULT_ENRP_PORT, self, pskFile=pskFile)]

    def postOptions(self) -> None:
        """Check values and the security rules that need no files."""
        # Unset: chosen in makeService (kept in the state directory when peering, where
        # peers pin it to our identity and a new one would be refused).
        if self["server-id"] is not None:
            self["server-id"] = parseServerIdentifier(self["server-id"])
        for name in _RATES:
            try:
                self[name] = parseRate(self[name])
            except usage.UsageError as e:
                raise usage.UsageError(f"--{name}: {e}") from None
        name = ""
        try:
            for convert, names in _POSITIVE:
                for name in names:
                    self[name] = convert(self[name])
                    if self[name] <= 0:
                        raise ValueError(f"--{name} must be positive")
        except ValueError as e:
            message = str(e)
            if not message.startswith("--"):
                message = f"--{name}: {message}"
            raise usage.UsageError(message) from None
        if not self["insecure"]:
            listener = _notTls(self["asap"] + self["enrp"], SECURE_ENDPOINT_TYPES)
            if listener is not None:
                raise usage.UsageError(
                    f"listener {listener!r} is not TLS: a secure ENRP server listens "
                    "only with tlspsk: or ssl: (RFC 5355 section 2.15); use --insecure "
                    "to allow it"
                )
            peer = _notTls(self["peer"], SECURE_CLIENT_TYPES)
            if peer is not None:
                raise usage.UsageError(
                    f"peer {peer!r} is not TLS: a secure ENRP server accepts no "
                    "update from a peer without TLS (RFC 5355 section 2.15); use "
                    "--insecure to allow it"
                )
        if self["registrar"] is not None:
            self["registrar"] = namedRegistrar(self["registrar"], self.peering)
