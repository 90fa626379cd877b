"""``twistd vpngw``: the IKEv2 VPN gateway as a twistd service.

With no options it listens on 127.0.0.1 port 500 with identity ``vpngw@localhost``, accepts
any client identity with a freshly generated pre-shared key, and logs a strongSwan
configuration that connects to it.

Redirects (RFC 5685): ``--redirect-to`` lists the gateways clients are sent to, and
``--redirect-always``, ``--redirect-max-sas``, ``--redirect-max-load``, ``--anycast`` and
``--drain`` say when; ``--admin`` serves status (JSON, an HTML page, Prometheus metrics)
and commands over HTTP, and SIGHUP reloads the secrets, certificates and targets files. With
``--pool`` the gateway registers itself as a pool element of an RSerPool pool (its load as
the Least Used value), and ``--redirect-pool`` takes the targets from such a pool.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from twisted_rserpool._reload import ReloadOnSignal
from twisted_rserpool._tap.admin import TOKEN_FILE_OPTION, adminService
from twisted_rserpool._tap.classes import namedSubclass
from twisted_rserpool._tap.coerce import atLeastOne, nonNegativeInt, positiveFloat
from twisted_rserpool._tap.vpngw_auth import (
    AUTH_FLAGS,
    AUTH_PARAMETERS,
    GENERATED_PSK_FILE,
    auth_config,
    check_auth,
    client_hint,
    write_generated_psk,
)
from twisted_rserpool._tap.vpngw_tun import (
    TUN_FLAGS,
    TUN_HELP,
    TUN_PARAMETERS,
    check_tun,
    tun_installer,
    tun_service,
)
from twisted_rserpool._tap.vpngw_vip import VIP_HELP, check_vip, vip_config, vip_hint
from twisted_rserpool.asap.element import PoolElement
from twisted_rserpool.asap.user import PoolUser
from twisted_rserpool.ike.config import (
    DEFAULT_CHILD_SUITES,
    DEFAULT_IKE_SUITES,
    DEFAULT_LIVENESS_INTERVAL,
    DEFAULT_MAX_TRAFFIC_SELECTORS,
    IkeConfig,
)
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.fragments import MIN_FRAGMENT_SIZE
from twisted_rserpool.ike.gateway import IkeGatewayProtocol, IkeUdpService
from twisted_rserpool.ike.proposals import (
    ProposalError,
    parse_child_suites,
    parse_ike_suites,
)
from twisted_rserpool.ike.redirect import (
    IGatewaySource,
    RedirectPolicy,
    StaticGateways,
    parse_gateway,
)
from twisted_rserpool.ike.redirect_pool import GatewayRegistration, PoolGateways
from twisted_rserpool.ike.reload import GatewayReloader, loadTargets, parseTargets
from twisted_rserpool.wire.parameters import LeastUsedPolicy, UdpTransport

__all__ = ["Options", "makeService"]

log = Logger()


def _fragment_size(value: str) -> int:
    """Octets of an IP datagram, or 0 (fragmentation off)."""
    number = int(value)
    if number != 0 and not MIN_FRAGMENT_SIZE <= number <= 65535:
        raise ValueError(f"must be 0 (off) or {MIN_FRAGMENT_SIZE} to 65535")
    return number


def _interval_or_off(value: str) -> float | None:
    """Seconds, or None for 0 (disabled)."""
    number = float(value)
    if number < 0:
        raise ValueError("must be 0 (off) or positive")
    return number or None


def _addresses(value: str) -> frozenset[str]:
    found = set()
    for item in value.split(","):
        if item.strip():
            found.add(str(ipaddress.ip_address(item.strip())))
    return frozenset(found)


class Options(usage.Options):
    """Command line options of ``twistd vpngw``."""

    synopsis = "[options]"
    longdesc = (
        "An IKEv2 (RFC 7296) VPN gateway with pre-shared key authentication. It negotiates "
        "IKE SAs and CHILD_SAs (or childless IKE SAs, RFC 6023) with clients such as "
        "strongSwan. With --tun it carries their traffic (userspace ESP in UDP 4500 and a "
        "TUN device); without, the CHILD_SAs are only recorded and logged. Without options "
        "it listens on 127.0.0.1 port 500 with a generated pre-shared key and logs how to "
        "connect."
    )

    optFlags: list[Any] = [  # noqa: RUF012 (twisted.python.usage API)
        *AUTH_FLAGS,
        *TUN_FLAGS,
        [
            "redirect-always",
            None,
            "Redirect every new client that supports RFC 5685 to the --redirect-to gateways "
            "(a pure redirector, which needs no Diffie-Hellman work).",
        ],
        [
            "redirect-in-auth",
            None,
            "Apply the redirect rules in IKE_AUTH, after the client authenticated, instead of "
            "in IKE_SA_INIT; the redirected IKE SA gets no CHILD_SA and is deleted after "
            "--redirect-delete-timeout.",
        ],
        [
            "drain",
            None,
            "Start draining: every new client is redirected; established clients are moved "
            "with the admin 'drain' command.",
        ],
    ]

    optParameters: list[Any] = [  # noqa: RUF012 (twisted.python.usage API)
        [
            "listen",
            "l",
            "127.0.0.1",
            "IPv4 or IPv6 addresses to listen on for IKE (UDP), comma separated; each address "
            "gets its own socket and IKE SA table.",
        ],
        [
            "port",
            "p",
            500,
            "UDP port to listen on. Clients reach port 500 without the RFC 3948 non-ESP "
            "marker; on other ports, messages to and from non-500 ports carry it.",
            int,
        ],
        [
            "nat-t-port",
            None,
            4500,
            "UDP port for NAT traversal (RFC 7296 section 2.23, RFC 3948), on each --listen "
            "address beside --port: a client that detects a NAT (or forces UDP encapsulation, "
            "strongSwan's encap = yes) moves there after IKE_SA_INIT; IKE on it carries the "
            "4-octet non-ESP marker, ESP packets on it are counted and dropped (no ESP data "
            "plane), NAT-keepalives ignored. An IKE SA follows its client to a new address or "
            "port only on an authenticated new request. 0 disables NAT traversal.",
            int,
        ],
        [
            "nat-keepalive-interval",
            None,
            20.0,
            "Seconds between the NAT-keepalives (RFC 3948 section 4) an IKE SA sends when "
            "NAT detection finds this gateway behind a NAT; 0 sends none.",
            float,
        ],
        [
            "identity",
            "i",
            None,
            "Our IKE identity (IDr): an IP address, user@domain (RFC 822) or @fqdn. Default: "
            "vpngw@localhost, or from --certificate.",
        ],
        *AUTH_PARAMETERS,
        [
            "secrets",
            "s",
            None,
            "File of pre-shared keys, one 'client-identity : secret' per line ('*' for any "
            'identity, "quoted" or 0xHEX secrets, # comments; owner only: a file with any '
            "group or other permission is refused). Default: generate one key for any "
            f"identity into --state-dir's {GENERATED_PSK_FILE} (mode 0600, in this format) "
            "and log that file's path, never the key (unless --certificate and "
            "--client-auth other than psk need no key).",
        ],
        [
            "proposals",
            None,
            None,
            "Restrict IKE SAs to these suites: comma separated strongSwan-style names "
            "encryption-[integrity]-[prfHASH]-group such as aes128-sha256-x25519 or "
            "aes256gcm16-prfsha384-ecp384 (several algorithms of a type in one name give "
            "every combination; 'default' is all). Encryption: aes128, aes256, aes128gcm16, "
            "aes256gcm16, chacha20poly1305; hashes (integrity and PRF): sha256, sha384, "
            "sha512, sha1 (legacy, weak); groups: modp2048, modp3072, modp4096, ecp256, "
            "ecp384, ecp521, x25519. Default: any combination of these, the client's first "
            "acceptable proposal and within it the strongest transforms "
            "(aes256gcm16 > chacha20poly1305 > aes256 > aes128gcm16 > aes128; sha512 > sha384 "
            "> sha256 > sha1; the client's KE group when offered), see docs/ike.md.",
        ],
        [
            "esp-proposals",
            None,
            None,
            "Restrict CHILD_SAs to these ESP suites, such as aes128gcm16, aes256-sha256, "
            "aes128gcm16-esn (-esn: extended sequence numbers, -noesn or nothing: 32-bit, "
            "-esn-noesn: either; 'default' is all). Encryption and integrity as for "
            "--proposals. Default: any combination, strongest first, ESN preferred.",
        ],
        [
            "cookie-threshold",
            None,
            50,
            "Number of half-open IKE SAs above which IKE_SA_INIT requests must return a "
            "stateless cookie (RFC 7296 section 2.6); 0 demands cookies always.",
            nonNegativeInt,
        ],
        [
            "max-sas",
            None,
            10000,
            "Maximum number of IKE SAs (half-open ones count).",
            nonNegativeInt,
        ],
        [
            "max-half-open",
            None,
            5000,
            "Maximum number of half-open IKE SAs; further IKE_SA_INIT requests are dropped.",
            nonNegativeInt,
        ],
        [
            "half-open-timeout",
            None,
            30.0,
            "Seconds a half-open IKE SA may wait for IKE_AUTH before it is dropped.",
            positiveFloat,
        ],
        [
            "liveness-interval",
            None,
            DEFAULT_LIVENESS_INTERVAL,
            "Seconds of silence from a client after which we send a liveness check "
            "(RFC 7296 section 2.4); unanswered after every retransmission (about a minute "
            "with the default retransmit timers), the IKE SA and its CHILD_SAs are "
            "deleted. 0 disables the checks (an SA whose client vanished then stays).",
            _interval_or_off,
        ],
        [
            "max-traffic-selectors",
            None,
            DEFAULT_MAX_TRAFFIC_SELECTORS,
            "Traffic selectors per TSi or TSr a CHILD_SA takes. A request with more is "
            "narrowed to the first ones within policy (RFC 7296 section 2.9); one with none "
            "within policy gets TS_UNACCEPTABLE for that CHILD_SA only, the IKE SA stays.",
            atLeastOne,
        ],
        [
            "rekey-interval",
            None,
            None,
            "Seconds after which the gateway rekeys an established IKE SA itself "
            "(CREATE_CHILD_SA). Default: never; clients such as strongSwan rekey on their "
            "own schedule, and the gateway answers their rekeys.",
            positiveFloat,
        ],
        [
            "childless",
            None,
            "allow",
            "Childless IKE SAs (RFC 6023): 'allow' accepts IKE_AUTH without a CHILD_SA from "
            "clients that announce support, 'never' refuses them.",
        ],
        [
            "fragment-size",
            None,
            None,
            "IKE fragmentation (RFC 7383), announced to every client in IKE_SA_INIT: when the "
            "client supports it too, a protected message (IKE_AUTH, CREATE_CHILD_SA, ...) whose "
            "IP datagram would exceed this many octets goes as IKE Fragment messages, so it "
            "crosses paths that drop IP fragments. Default: 576 over IPv4 and 1280 over IPv6 "
            "(RFC 7383 section 2.5.1). At least 200; 0 turns fragmentation off (not "
            "announced; large messages are then fragmented by IP).",
            _fragment_size,
        ],
        [
            "redirect-to",
            None,
            None,
            "Gateways redirected clients go to (RFC 5685): IPv4 or IPv6 addresses or fully "
            "qualified DNS names (letters, digits and hyphens, at least one dot; localhost "
            "too), comma separated, taken in turn; 'gw=3' gives a gateway a weight of 3.",
        ],
        [
            "redirect-targets",
            None,
            None,
            "File of redirect targets instead of --redirect-to: 'gw[=weight]' items, one a "
            "line or comma separated (# comments); read again on SIGHUP.",
        ],
        [
            "redirect-policy",
            None,
            None,
            "The redirect policy class as package.module.Class: a subclass of "
            "twisted_rserpool.ike.RedirectPolicy whose hooks (allow_redirect, overloaded, "
            "choose_gateway) decide; built as Class(source, always=..., max_ike_sas=..., "
            "max_load=..., load=..., anycast=..., unicast=..., in_auth=...) from the other "
            "redirect options, and asked even when they give no rule (docs/developer.md).",
        ],
        [
            "redirect-max-sas",
            None,
            None,
            "Redirect new clients while this gateway holds at least this many IKE SAs.",
            nonNegativeInt,
        ],
        [
            "redirect-max-load",
            None,
            None,
            "Redirect new clients while the load (IKE SAs divided by --max-sas) is above this "
            "fraction, such as 0.8.",
            positiveFloat,
        ],
        [
            "anycast",
            None,
            None,
            "Listen addresses that are anycast, comma separated: requests to them are always "
            "redirected to a unicast gateway (--unicast while not overloaded).",
        ],
        [
            "unicast",
            None,
            None,
            "This gateway's own unicast identity for clients that reached it by --anycast.",
        ],
        [
            "redirected-from-allowed",
            None,
            None,
            "Accept clients carrying REDIRECTED_FROM only from these gateway addresses "
            "(comma separated). Default: from any gateway.",
        ],
        [
            "redirect-delete-timeout",
            None,
            30.0,
            "Seconds a client redirected in IKE_AUTH or by an INFORMATIONAL redirect keeps its "
            "IKE SA here before the gateway deletes it.",
            positiveFloat,
        ],
        [
            "pool",
            None,
            None,
            "Register this gateway as a pool element of this RSerPool pool handle: a UDP "
            "user transport with the first --listen address and --port, and its share of "
            "--max-sas as the Least Used load (kept current); needs --pool-enrp.",
        ],
        [
            "redirect-pool",
            None,
            None,
            "Redirect to the least loaded gateway of this RSerPool pool (resolved through "
            "the ASAP pool user at --redirect-pool-enrp) instead of a --redirect-to list.",
        ],
        [
            "pool-interval",
            None,
            1.0,
            "Seconds between load updates of --pool and resolutions of --redirect-pool.",
            positiveFloat,
        ],
        [
            "admin",
            None,
            None,
            "Endpoint of the admin interface (JSON status, HTML status page, Prometheus "
            "/metrics; POST drain, redirect, targets), such as tcp:8500. Bound to 127.0.0.1 "
            "unless it names an interface; every POST, and off loopback every request, "
            "needs the bearer token.",
        ],
        TOKEN_FILE_OPTION,
        *TUN_PARAMETERS,
    ]

    def opt_pool_enrp(self, endpoint: str) -> None:
        """ENRP server of the --pool registration, as a client endpoint string such as
        tlspsk:host=127.0.0.1:port=3864:identity=gw1:pskFile=gw1.psk (repeatable)."""
        self.setdefault("pool-enrp", []).append(endpoint)

    def opt_redirect_pool_enrp(self, endpoint: str) -> None:
        """ENRP server that resolves --redirect-pool, such as
        tlspsk:host=127.0.0.1:port=3864:caCertificate=enrp.pem (repeatable)."""
        self.setdefault("redirect-pool-enrp", []).append(endpoint)

    def opt_address_pool(self, network: str) -> None:
        self.setdefault("address-pool", []).append(network)

    opt_address_pool.__doc__ = VIP_HELP["address-pool"]

    def opt_subnet(self, network: str) -> None:
        self.setdefault("subnet", []).append(network)

    opt_subnet.__doc__ = VIP_HELP["subnet"]

    def opt_dns(self, address: str) -> None:
        self.setdefault("dns", []).append(address)

    opt_dns.__doc__ = VIP_HELP["dns"]

    def opt_tun_address(self, address: str) -> None:
        self.setdefault("tun-address", []).append(address)

    opt_tun_address.__doc__ = TUN_HELP["tun-address"]

    def opt_tun_route(self, network: str) -> None:
        self.setdefault("tun-route", []).append(network)

    opt_tun_route.__doc__ = TUN_HELP["tun-route"]

    def postOptions(self) -> None:
        """Check and convert the options."""
        self.setdefault("pool-enrp", [])
        self.setdefault("redirect-pool-enrp", [])
        addresses = [a.strip() for a in self["listen"].split(",") if a.strip()]
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise usage.UsageError(f"--listen: {address!r} is not an IP address") from None
        if not addresses or len(set(addresses)) != len(addresses):
            raise usage.UsageError("--listen needs distinct IP addresses")
        self["addresses"] = addresses
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError("--port must be 0 to 65535")
        if not 0 <= self["nat-t-port"] <= 65535:
            raise usage.UsageError("--nat-t-port must be 0 (disabled) to 65535")
        if self["nat-t-port"] and self["nat-t-port"] == self["port"]:
            raise usage.UsageError("--nat-t-port must differ from --port (or be 0)")
        if self["nat-keepalive-interval"] < 0:
            raise usage.UsageError("--nat-keepalive-interval must not be negative")
        try:
            self["ike_suites"] = (
                parse_ike_suites(self["proposals"]) if self["proposals"] else DEFAULT_IKE_SUITES
            )
            self["child_suites"] = (
                parse_child_suites(self["esp-proposals"])
                if self["esp-proposals"]
                else DEFAULT_CHILD_SUITES
            )
        except ProposalError as e:
            raise usage.UsageError(f"proposals: {e}") from None
        if self["childless"] not in ("allow", "never"):
            raise usage.UsageError("--childless must be 'allow' or 'never'")
        try:
            self["targets"] = parseTargets(self["redirect-to"] or "")
        except ValueError as e:
            raise usage.UsageError(f"--redirect-to: {e}") from None
        try:
            self["unicast_gateway"] = (
                parse_gateway(self["unicast"]) if self["unicast"] is not None else None
            )
        except ValueError as e:
            raise usage.UsageError(f"--unicast: {e}") from None
        try:
            self["anycast_addresses"] = _addresses(self["anycast"] or "")
            self["from_allowed"] = (
                _addresses(self["redirected-from-allowed"])
                if self["redirected-from-allowed"] is not None
                else None
            )
        except ValueError as e:
            raise usage.UsageError(f"redirect options: {e}") from None
        if self["redirect-targets"] is not None:
            if self["redirect-to"] is not None or self["redirect-pool"] is not None:
                raise usage.UsageError(
                    "give one of --redirect-to, --redirect-targets and --redirect-pool"
                )
            try:
                self["targets"] = loadTargets(self["redirect-targets"])
            except ValueError as e:
                raise usage.UsageError(f"--redirect-targets: {e}") from None
        if self["redirect-policy"] is not None:
            self["redirect-policy"] = namedSubclass(
                "--redirect-policy", self["redirect-policy"], RedirectPolicy
            )
        wants_policy = (
            self["redirect-always"]
            or self["drain"]
            or self["redirect-max-sas"] is not None
            or self["redirect-max-load"] is not None
            or self["anycast_addresses"]
        )
        if self["redirect-pool"] is not None:
            if self["targets"][0]:
                raise usage.UsageError("give --redirect-to or --redirect-pool, not both")
            if not self["redirect-pool-enrp"]:
                raise usage.UsageError("--redirect-pool needs --redirect-pool-enrp")
        elif wants_policy and not self["targets"][0] and self["unicast_gateway"] is None:
            raise usage.UsageError("redirect rules need --redirect-to gateways")
        if self["pool"] is not None and not self["pool-enrp"]:
            raise usage.UsageError("--pool needs --pool-enrp")
        check_auth(self)
        check_vip(self)
        check_tun(self)


def _connect_hint(options: Options) -> str:
    ike = "default" if options["ike_suites"] == DEFAULT_IKE_SUITES else options["ike_suites"][0]
    esp = (
        "default" if options["child_suites"] == DEFAULT_CHILD_SUITES else options["child_suites"][0]
    )
    return client_hint(options, str(ike), str(esp), **vip_hint(options))


def makePolicy(
    options: Options,
    load: Any,
    source: IGatewaySource | None = None,
    policyClass: type[RedirectPolicy] | None = None,
) -> RedirectPolicy | None:
    """The redirect policy the options describe (None: never redirect).

    ``policyClass`` (default: ``--redirect-policy``, else ``RedirectPolicy``) is built with
    the gateway source and the keyword arguments of ``RedirectPolicy``; a class given
    either way is built even when the options name no gateway and no rule.
    """
    gateways, weights = options["targets"]
    policyClass = policyClass or options["redirect-policy"]
    if (
        policyClass is None
        and source is None
        and not gateways
        and options["unicast_gateway"] is None
        and not options["admin"]
        and options["redirect-targets"] is None
    ):
        return None
    policy = (policyClass or RedirectPolicy)(
        source if source is not None else StaticGateways(gateways, weights),
        always=options["redirect-always"],
        max_ike_sas=options["redirect-max-sas"],
        max_load=options["redirect-max-load"],
        load=load,
        anycast=options["anycast_addresses"],
        unicast=options["unicast_gateway"],
        in_auth=options["redirect-in-auth"],
    )
    policy.draining = options["drain"]
    return policy


def makeService(
    options: Options,
    reactor: Any = None,
    *,
    redirectPolicyClass: type[RedirectPolicy] | None = None,
) -> IService:
    """The gateway service: an IKE endpoint on a UDP port for each listen address.

    ``redirectPolicyClass`` is the redirect policy's class (see ``makePolicy``), for a
    ``.tac`` file that builds the gateway ``twistd vpngw`` runs with a policy of its own.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor  # noqa: PLC0415 (lazy)

        reactor = default_reactor

    config = IkeConfig(
        local_id=options["identity"],
        psks=options["psks"],
        ike_suites=options["ike_suites"],
        child_suites=options["child_suites"],
        childless=options["childless"],
        cookie_threshold=options["cookie-threshold"],
        max_ike_sas=options["max-sas"],
        max_half_open=options["max-half-open"],
        half_open_timeout=options["half-open-timeout"],
        liveness_interval=options["liveness-interval"],
        nat_keepalive_interval=options["nat-keepalive-interval"] or None,
        max_traffic_selectors=options["max-traffic-selectors"],
        rekey_interval=options["rekey-interval"],
        redirected_from_allowed=options["from_allowed"],
        redirect_delete_timeout=options["redirect-delete-timeout"],
        **auth_config(options),
        fragmentation=options["fragment-size"] != 0,
        fragment_size=options["fragment-size"] or None,
        **vip_config(options),
    )
    service = MultiService()  # type: ignore[no-untyped-call]
    protocols: list[IkeGatewayProtocol] = []

    def load() -> float:
        limit: int = options["max-sas"]
        return sum(len(p.endpoint) for p in protocols) / max(1, limit)

    source: PoolGateways | None = None
    if options["redirect-pool"] is not None:
        user = PoolUser(options["redirect-pool-enrp"], reactor=reactor)
        source = PoolGateways(
            user, options["redirect-pool"].encode(), reactor, options["pool-interval"]
        )
        source.setServiceParent(service)  # type: ignore[no-untyped-call]
    if options["pool"] is not None:
        # The user transport is where clients reach the gateway: IKE over UDP.
        ike = UdpTransport(options["port"], ipaddress.ip_address(options["addresses"][0]))
        element = PoolElement(
            options["pool"].encode(),
            None,
            options["pool-enrp"],
            None,
            userTransport=ike,
            policy=LeastUsedPolicy(0),
            registrationLife=30,
            reactor=reactor,
        )
        GatewayRegistration(element, load, reactor, options["pool-interval"]).setServiceParent(
            service
        )  # type: ignore[no-untyped-call]
    policy = makePolicy(options, load, source, redirectPolicyClass)
    planes = []
    for address in options["addresses"]:
        plane = tun_installer(options)
        endpoint = IkeEndpoint(
            config, (address, options["port"]), redirect_policy=policy, installer=plane
        )
        protocol = IkeGatewayProtocol(endpoint, reactor)
        protocols.append(protocol)
        if plane is not None:
            planes.append((protocol, plane))
        udp = IkeUdpService(
            protocol,
            address,
            options["port"],
            reactor,
            natTraversalPort=options["nat-t-port"] or None,
        )
        udp.setServiceParent(service)  # type: ignore[no-untyped-call]
    if planes:
        tun_service(options, planes, reactor).setServiceParent(service)  # type: ignore[no-untyped-call]
    reloader = _reloader(options, protocols, policy, reactor)
    hangUp = ReloadOnSignal(reloader, reactor, "the secrets, certificates and redirect targets")
    hangUp.setServiceParent(service)  # type: ignore[no-untyped-call]
    if options["admin"] is not None:
        admin = _adminService(options, reactor, protocols, policy, load, reloader)
        admin.setServiceParent(service)  # type: ignore[no-untyped-call]
    keyFile = write_generated_psk(options)
    if keyFile is not None:
        log.info(
            "vpngw: no --secrets given; any client identity may connect with the generated "
            "pre-shared key in {keyFile} (mode 0600)\n{hint}",
            keyFile=str(keyFile),
            hint=_connect_hint(options),
        )
    else:
        log.info(
            "vpngw: {identity} authenticates with {method}, clients with {client_auth}\n{hint}",
            identity=str(options["identity"]),
            method="its certificate" if options["credentials"] is not None else "a PSK",
            client_auth=options["client-auth"],
            hint=_connect_hint(options),
        )
    return service


def _reloader(
    options: Options, protocols: list[IkeGatewayProtocol], policy: Any, reactor: Any
) -> GatewayReloader:
    """What SIGHUP reads again: the files the options name (a generated key is not one)."""
    source = policy.source if policy is not None else None
    return GatewayReloader(
        [p.endpoint for p in protocols],
        options["identity"],
        secrets=options["secrets"],
        eapUsers=options["eap-users"] if options["eap"] is not None else None,
        certificate=options["certificate"],
        privateKey=options["private-key"],
        ca=options["ca"],
        targetsFile=options["redirect-targets"],
        targets=source if isinstance(source, StaticGateways) else None,
        clock=reactor.seconds,
    )


def _adminService(
    options: Options,
    reactor: Any,
    protocols: list[IkeGatewayProtocol],
    policy: RedirectPolicy | None,
    load: Any,
    reloader: GatewayReloader,
) -> IService:
    """The admin web site on --admin: loopback by default, the token from --state-dir."""
    from twisted_rserpool.ike.admin import GatewayAdminResource, adminSite  # noqa: PLC0415

    def makeSite(token: str, remote: bool) -> Any:
        resource = GatewayAdminResource(
            protocols, policy, reactor, load, token, tokenForReads=remote, reloader=reloader
        )
        return adminSite(resource)

    return adminService(options, reactor, makeSite)
