"""Configuration of an IKE endpoint: identities, pre-shared keys, suites, limits and timers."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from twisted_rserpool.ike.child import any_selector
from twisted_rserpool.ike.codec import TrafficSelector
from twisted_rserpool.ike.constants import IdType
from twisted_rserpool.ike.crypto import DhGroupId, IntegrityId, PrfId
from twisted_rserpool.ike.fragments import MIN_FRAGMENT_SIZE, FragmentLimits
from twisted_rserpool.ike.proposals import (
    DH_PREFERENCE,
    ESP_ALGORITHMS,
    IKE_ALGORITHMS,
    INTEGRITY_PREFERENCE,
    PRF_PREFERENCE,
    ChildSuite,
    IkeSuite,
    child_suite_set,
    ike_suite_set,
)

if TYPE_CHECKING:
    from twisted_rserpool.ike.addresspool import AddressPool
    from twisted_rserpool.ike.auth.certificates import Credentials, TrustAnchors
    from twisted_rserpool.ike.auth.eap import IEapAuthenticator

__all__ = [
    "DEFAULT_CHILD_SUITES",
    "DEFAULT_IKE_SUITES",
    "DEFAULT_INITIATOR_CHILD_SUITES",
    "DEFAULT_INITIATOR_IKE_SUITES",
    "DEFAULT_LIVENESS_INTERVAL",
    "DEFAULT_MAX_TRAFFIC_SELECTORS",
    "PEER_AUTH_METHODS",
    "Identity",
    "IkeConfig",
    "PskTable",
]

DEFAULT_IKE_SUITES = IKE_ALGORITHMS
"""Any combination of the IKE transforms we implement, strong first (docs/ike.md)."""
DEFAULT_CHILD_SUITES = ESP_ALGORITHMS
"""Any combination of the ESP transforms we negotiate, strong first (docs/ike.md)."""
PEER_AUTH_METHODS = ("psk", "certificate", "eap-mschapv2")
"""What an IKE endpoint may demand of its peer's authentication (``IkeConfig.peer_auth``)."""
DEFAULT_INITIATOR_IKE_SUITES = ike_suite_set(
    prfs=[p for p in PRF_PREFERENCE if p != PrfId.HMAC_SHA1],
    integrities=[i for i in INTEGRITY_PREFERENCE if i != IntegrityId.HMAC_SHA1_96],
    groups=[DhGroupId.CURVE25519, *(g for g in DH_PREFERENCE if g != DhGroupId.CURVE25519)],
)
"""What our initiator offers by default: no legacy SHA-1 (RFC 8247), X25519 as the first KE
guess (cheap, and what most gateways take first), then the other groups strong first."""
DEFAULT_INITIATOR_CHILD_SUITES = child_suite_set(
    integrities=[i for i in INTEGRITY_PREFERENCE if i != IntegrityId.HMAC_SHA1_96]
)
"""The ESP suites our initiator offers by default: no legacy SHA-1 (RFC 8221)."""
DEFAULT_LIVENESS_INTERVAL = 30.0
"""Seconds of silence after which an established IKE SA checks that its peer is alive."""
DEFAULT_MAX_TRAFFIC_SELECTORS = 64
"""Traffic selectors per TSi or TSr a CHILD_SA takes; more are narrowed to the first ones."""


@dataclass(frozen=True)
class Identity:
    """An IKE identity: ID type and identification data (RFC 7296 section 3.5)."""

    id_type: int
    data: bytes

    @classmethod
    def parse(cls, text: str) -> Identity:
        """An identity written as strongSwan writes it.

        ``192.0.2.1`` or ``2001:db8::1`` is an address, ``user@example.org`` an RFC 822
        address, ``@host.example.org`` (or a name without ``@``) an FQDN.
        """
        text = text.strip()
        if not text:
            raise ValueError("empty identity")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            kind = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
            return cls(kind, address.packed)
        if text.startswith("@"):
            return cls(IdType.ID_FQDN, text[1:].encode("utf-8"))
        if "@" in text:
            return cls(IdType.ID_RFC822_ADDR, text.encode("utf-8"))
        return cls(IdType.ID_FQDN, text.encode("utf-8"))

    def __str__(self) -> str:
        if self.id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            try:
                return str(ipaddress.ip_address(self.data))
            except ValueError:
                return self.data.hex()
        if self.id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            return self.data.decode("utf-8", "replace")
        return f"{self.id_type}:{self.data.hex()}"


@dataclass(frozen=True)
class PskTable:
    """Pre-shared keys by peer identity, with an optional key for every other identity."""

    secrets: Mapping[Identity, bytes] = field(default_factory=dict)
    default: bytes | None = None

    def lookup(self, peer: Identity) -> bytes | None:
        """The key shared with ``peer``, or None."""
        return self.secrets.get(peer, self.default)

    @classmethod
    def parse(cls, text: str) -> PskTable:
        """Parse a secrets file: one ``identity : secret`` per line, ``*`` for any identity.

        Blank lines and lines starting with ``#`` are ignored; a secret may be quoted, and a
        secret written ``0x...`` is hexadecimal.
        """
        secrets: dict[Identity, bytes] = {}
        default: bytes | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"line {number}: expected 'identity : secret'")
            secret_text = value.strip()
            if len(secret_text) >= 2 and secret_text[0] == secret_text[-1] == '"':
                secret = secret_text[1:-1].encode("utf-8")
            elif secret_text.startswith("0x"):
                secret = bytes.fromhex(secret_text[2:])
            else:
                secret = secret_text.encode("utf-8")
            if not secret:
                raise ValueError(f"line {number}: empty secret")
            if name.strip() in ("*", "%any"):
                default = secret
            else:
                secrets[Identity.parse(name)] = secret
        return cls(secrets, default)


@dataclass(frozen=True)
class IkeConfig:
    """Everything an IKE endpoint needs to know about its policy.

    ``childless`` is ``"allow"`` (accept or create IKE SAs without a CHILD_SA when the peer
    supports RFC 6023), ``"force"`` (as initiator, never request a CHILD_SA from a peer that
    supports it) or ``"never"``. ``initial_contact`` makes an initiator send
    N(INITIAL_CONTACT) in IKE_AUTH (the peer then deletes older IKE SAs of our identity).
    ``cookie_threshold`` is the number of half-open IKE SAs above which IKE_SA_INIT
    requests must carry a cookie (RFC 7296 section 2.6). ``rekey_interval`` makes us rekey
    an established IKE SA that often (default: never; peers such as strongSwan rekey on
    their own schedule). Times are in seconds.

    Proposals: ``ike_suites`` and ``child_suites`` are what we accept as a responder, most
    preferred first. As an initiator we offer ``initiator_ike_suites`` and
    ``initiator_child_suites`` (see ``offered_ike_suites``); None means the same as we
    accept, except that for the default sets the initiator offers
    ``DEFAULT_INITIATOR_IKE_SUITES`` / ``DEFAULT_INITIATOR_CHILD_SUITES`` (no SHA-1, X25519
    as the first KE guess).

    Redirects (RFC 5685): ``follow_redirects`` makes an initiator send
    N(REDIRECT_SUPPORTED) and follow a valid N(REDIRECT), at most ``max_redirects`` times
    within ``redirect_window`` seconds, and only to gateways in ``redirect_targets`` (their
    text form; None allows any). ``redirected_from_allowed`` makes a gateway accept a client
    carrying N(REDIRECTED_FROM) only from those gateway addresses (None accepts any).
    ``redirect_delete_timeout`` is how long a gateway keeps an IKE SA it redirected (in
    IKE_AUTH or INFORMATIONAL) before deleting it itself. ``redirect_port`` is the UDP port
    of the gateway we are redirected to (RFC 5685 uses 500; strongSwan hard-codes it).

    Retries: a request is sent ``retransmit_tries`` times, ``retransmit_timeout`` after the
    first and twice as long after each following send. An initiator sends IKE_SA_INIT at
    most ``max_init_attempts`` times (answers with a COOKIE or INVALID_KE_PAYLOAD each cost
    one); an IKE SA rekey follows INVALID_KE_PAYLOAD ``max_rekey_attempts`` times in all,
    and a failed scheduled rekey is retried after ``rekey_interval * rekey_retry_fraction``,
    at least ``rekey_retry_min`` seconds.

    Liveness (RFC 7296 section 2.4): after ``liveness_interval`` seconds without a message
    from the peer, an established IKE SA sends an empty INFORMATIONAL request; when it goes
    unanswered after every retransmission the IKE SA is deleted (``"peer unreachable"``).
    None disables the checks (an SA whose peer vanished then stays until deleted).

    NAT traversal (RFC 7296 section 2.23, RFC 3948): an established IKE SA that detected
    that we are behind a NAT sends a NAT-keepalive every ``nat_keepalive_interval``
    seconds (None: never) to keep the NAT's mapping.

    Traffic selectors: a CHILD_SA's TSi and TSr are narrowed to our ``local_ts`` and
    ``remote_ts`` (RFC 7296 section 2.9), keeping at most ``max_traffic_selectors`` of each,
    the first in the initiator's order; a request of which nothing is within our policy is
    refused with TS_UNACCEPTABLE, for that CHILD_SA only (the IKE SA stays).

    Fragmentation (RFC 7383): with ``fragmentation`` we announce
    N(IKEV2_FRAGMENTATION_SUPPORTED) in IKE_SA_INIT; when the peer does too, a protected
    message of ours whose IP datagram would exceed ``fragment_size`` octets (None: 576 over
    IPv4, 1280 over IPv6, RFC 7383 2.5.1) goes out as IKE Fragment messages, and the peer's
    fragments are reassembled within ``fragment_limits``.

    Authentication (RFC 7296 sections 2.15-2.16, 3.5-3.8; RFC 7427): we sign our AUTH with
    ``credentials`` (certificate chain and RSA or ECDSA key) when given, else as an
    initiator with ``eap_peer`` (EAP-MSCHAPv2 user name and password) we leave AUTH out and
    run EAP, else we use the pre-shared key. ``peer_auth`` is what we demand of the peer:
    ``"psk"``, ``"certificate"`` (verified against ``trust``, the CA certificates, with
    the peer's identity in its certificate; checked at ``wall_time()``) or
    ``"eap-mschapv2"`` (responder only: the ``eap`` authenticator checks the client, in
    at most ``max_eap_rounds`` IKE_AUTH rounds). ``send_cert`` says when our CERT payloads
    go out (``"ifasked"``: when the peer sent a CERTREQ). With ``rsa_pss`` an RSA key signs
    with RSASSA-PSS instead of PKCS#1 v1.5 (when the peer supports RFC 7427).

    Virtual IPs (RFC 7296 sections 2.19, 3.15; ``twisted_rserpool.ike.tasks.configuration``):
    a gateway with an ``address_pool`` answers CP(CFG_REQUEST) with an address leased to the
    client's identity, the ``dns_servers`` and the protected subnets (``local_ts``), and
    narrows the client's TSi to that address; a CHILD_SA of a client holding no address is
    then refused with FAILED_CP_REQUIRED. An initiator with ``request_addresses`` asks for
    them in IKE_AUTH (``0.0.0.0`` or ``::``: any address of that family).

    ``random(n)`` returns ``n`` random octets for nonces, SPIs, IVs, cookie secrets and
    Diffie-Hellman private values (default ``os.urandom``; tests pass a seeded source to
    replay an exchange octet for octet; never do that in production).
    """

    local_id: Identity
    psks: PskTable
    ike_suites: tuple[IkeSuite, ...] = DEFAULT_IKE_SUITES
    child_suites: tuple[ChildSuite, ...] = DEFAULT_CHILD_SUITES
    initiator_ike_suites: tuple[IkeSuite, ...] | None = None
    initiator_child_suites: tuple[ChildSuite, ...] | None = None
    remote_id: Identity | None = None
    local_ts: tuple[TrafficSelector, ...] = (any_selector(4), any_selector(6))
    remote_ts: tuple[TrafficSelector, ...] = (any_selector(4), any_selector(6))
    childless: str = "allow"
    cookie_threshold: int = 50
    max_ike_sas: int = 10000
    max_half_open: int = 5000
    half_open_timeout: float = 30.0
    retransmit_timeout: float = 2.0
    retransmit_tries: int = 5
    liveness_interval: float | None = DEFAULT_LIVENESS_INTERVAL
    nat_keepalive_interval: float | None = 20.0
    nonce_length: int = 32
    initial_contact: bool = True
    rekey_interval: float | None = None
    follow_redirects: bool = True
    redirect_targets: frozenset[str] | None = None
    max_redirects: int = 5
    redirect_window: float = 300.0
    redirected_from_allowed: frozenset[str] | None = None
    redirect_delete_timeout: float = 30.0
    redirect_port: int = 500
    fragmentation: bool = True
    fragment_size: int | None = None
    fragment_limits: FragmentLimits = field(default_factory=FragmentLimits)
    max_init_attempts: int = 4
    max_rekey_attempts: int = 2
    rekey_retry_fraction: float = 0.1
    rekey_retry_min: float = 10.0
    max_traffic_selectors: int = DEFAULT_MAX_TRAFFIC_SELECTORS
    credentials: Credentials | None = None
    trust: TrustAnchors | None = None
    peer_auth: str = "psk"
    send_cert: str = "ifasked"
    rsa_pss: bool = False
    eap: IEapAuthenticator | None = None
    eap_peer: tuple[bytes, str] | None = None
    max_eap_rounds: int = 8
    address_pool: AddressPool | None = None
    dns_servers: tuple[IPv4Address | IPv6Address, ...] = ()
    request_addresses: tuple[IPv4Address | IPv6Address, ...] = ()
    wall_time: Callable[[], float] = time.time
    random: Callable[[int], bytes] = os.urandom

    def __post_init__(self) -> None:
        if self.childless not in ("allow", "force", "never"):
            raise ValueError("childless must be allow, force or never")
        if not self.ike_suites:
            raise ValueError("at least one IKE suite is needed")
        if self.retransmit_tries < 1 or self.retransmit_timeout <= 0:
            raise ValueError("retransmission needs a positive timeout and at least one try")
        if self.fragment_size is not None and not MIN_FRAGMENT_SIZE <= self.fragment_size <= 65535:
            raise ValueError(f"fragment_size must be {MIN_FRAGMENT_SIZE} to 65535 octets")
        if self.liveness_interval is not None and self.liveness_interval <= 0:
            raise ValueError("liveness_interval must be positive (None disables the checks)")
        if self.nat_keepalive_interval is not None and self.nat_keepalive_interval <= 0:
            raise ValueError("nat_keepalive_interval must be positive (None: no keepalives)")
        if self.max_traffic_selectors < 1:
            raise ValueError("max_traffic_selectors must be at least 1")
        if self.peer_auth not in PEER_AUTH_METHODS:
            raise ValueError(f"peer_auth must be one of {', '.join(PEER_AUTH_METHODS)}")
        if self.peer_auth == "certificate" and self.trust is None:
            raise ValueError("peer_auth 'certificate' needs trust (the CA certificates)")
        if self.peer_auth == "eap-mschapv2" and self.eap is None:
            raise ValueError("peer_auth 'eap-mschapv2' needs an eap authenticator")
        if self.send_cert not in ("always", "ifasked", "never"):
            raise ValueError("send_cert must be always, ifasked or never")
        if self.max_eap_rounds < 1:
            raise ValueError("max_eap_rounds must be at least 1")
        if self.initiator_ike_suites == ():
            raise ValueError("initiator_ike_suites must hold a suite (None: the default)")

    @property
    def offered_ike_suites(self) -> tuple[IkeSuite, ...]:
        """The IKE suites we offer when we initiate (IKE_SA_INIT, IKE SA rekey)."""
        if self.initiator_ike_suites is not None:
            return self.initiator_ike_suites
        if self.ike_suites is DEFAULT_IKE_SUITES or self.ike_suites == DEFAULT_IKE_SUITES:
            return DEFAULT_INITIATOR_IKE_SUITES
        return self.ike_suites

    @property
    def offered_child_suites(self) -> tuple[ChildSuite, ...]:
        """The ESP suites we offer when we request a CHILD_SA (IKE_AUTH, CHILD_SA rekey)."""
        if self.initiator_child_suites is not None:
            return self.initiator_child_suites
        if self.child_suites is DEFAULT_CHILD_SUITES or self.child_suites == DEFAULT_CHILD_SUITES:
            return DEFAULT_INITIATOR_CHILD_SUITES
        return self.child_suites
