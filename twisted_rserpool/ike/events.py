"""Events the IKE core reports to its user (immutable values)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from twisted_rserpool.ike.child import ChildSa
from twisted_rserpool.ike.codec import GatewayIdentity
from twisted_rserpool.ike.config import Identity
from twisted_rserpool.ike.proposals import IkeSuite

__all__ = [
    "ChildSaDeleted",
    "ChildSaEstablished",
    "ChildSaFailed",
    "ClientRedirected",
    "IkeEvent",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaFailed",
    "IkeSaMoved",
    "IkeSaRedirected",
    "IkeSaRekeyed",
    "LivenessConfirmed",
]

Address = tuple[str, int]


@dataclass(frozen=True)
class IkeSaEstablished:
    """IKE_AUTH completed: both sides are authenticated and the IKE SA is usable.

    ``authentication`` names how the peer's AUTH was verified, with the IKE suite
    (``"PSK, <suite>"``). ``virtual_ips`` are the client's addresses from the
    configuration payloads (RFC 7296 2.19): leased by the gateway, assigned to the client.
    """

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    peer_address: Address
    local_id: Identity
    peer_id: Identity
    suite: IkeSuite
    peer_behind_nat: bool
    local_behind_nat: bool
    authentication: str | None = None
    virtual_ips: tuple[IPv4Address | IPv6Address, ...] = ()


@dataclass(frozen=True)
class IkeSaFailed:
    """An IKE SA could not be set up; ``notify_type`` is the error notify sent or received."""

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    peer_address: Address
    reason: str
    notify_type: int | None = None


@dataclass(frozen=True)
class IkeSaDeleted:
    """An established IKE SA (and its CHILD_SAs) is gone.

    ``reason`` is ``"deleted by peer"``, ``"deleted"`` (by us), or ``"peer unreachable"``.
    """

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    peer_address: Address
    reason: str


@dataclass(frozen=True)
class IkeSaRekeyed:
    """An IKE SA was rekeyed: the new SA (new SPIs, new keys) takes over its CHILD_SAs.

    ``by_peer`` says who started the rekey (its starter is the new SA's initiator). The old
    SA then goes away (``IkeSaDeleted`` with reason ``"rekeyed"``).
    """

    old_spi_i: bytes
    old_spi_r: bytes
    spi_i: bytes
    spi_r: bytes
    peer_address: Address
    suite: IkeSuite
    by_peer: bool


@dataclass(frozen=True)
class ChildSaEstablished:
    """A CHILD_SA was negotiated and handed to the installer.

    ``installed`` is the installer's answer: whether a data plane now carries the CHILD_SA
    (False with ``RecordingChildSAInstaller``, which only records it). The IKE SA keeps the
    CHILD_SA either way, so the peer's DELETE and rekeys of it are answered.
    """

    child: ChildSa
    installed: bool


@dataclass(frozen=True)
class ChildSaFailed:
    """A CHILD_SA request failed while its IKE SA stays up."""

    spi_i: bytes
    spi_r: bytes
    reason: str
    notify_type: int | None = None


@dataclass(frozen=True)
class ChildSaDeleted:
    """A CHILD_SA was deleted (by the peer when ``by_peer``)."""

    child: ChildSa
    by_peer: bool


@dataclass(frozen=True)
class LivenessConfirmed:
    """The peer answered our liveness check (an empty INFORMATIONAL request)."""

    spi_i: bytes
    spi_r: bytes
    round_trip: float


@dataclass(frozen=True)
class IkeSaRedirected:
    """A gateway redirected our IKE SA (RFC 5685) and we follow it.

    ``exchange`` is where the REDIRECT came: ``"IKE_SA_INIT"``, ``"IKE_AUTH"`` or
    ``"INFORMATIONAL"``. ``new_spi_i`` is the SPIi of the IKE SA started with the new
    gateway, or None when ``new_gateway`` is an FQDN the caller must resolve (then call
    ``IkeEndpoint.follow_redirect``). ``peer_id`` is the old gateway's authenticated
    identity (None in IKE_SA_INIT, where nothing is authenticated yet), ``authentication``
    how its AUTH was verified, with the IKE suite (``"PSK, <suite>"``; None in IKE_SA_INIT).
    """

    spi_i: bytes
    spi_r: bytes
    peer_address: Address
    new_gateway: GatewayIdentity
    exchange: str
    new_spi_i: bytes | None
    peer_id: Identity | None = None
    authentication: str | None = None


@dataclass(frozen=True)
class IkeSaMoved:
    """An IKE SA moved to a new path (RFC 7296 section 2.23): the float to UDP port 4500,
    or a NAT rebinding the peer's authenticated request revealed.

    ``peer_address`` is where our messages now go, from our ``local_port``.
    """

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    old_address: Address
    peer_address: Address
    local_port: int
    reason: str


@dataclass(frozen=True)
class ClientRedirected:
    """We (a gateway) redirected a client to ``gateway`` for ``reason``."""

    peer_address: Address
    gateway: GatewayIdentity
    reason: str
    exchange: str
    spi_i: bytes
    spi_r: bytes


IkeEvent = (
    IkeSaEstablished
    | IkeSaFailed
    | IkeSaDeleted
    | IkeSaRekeyed
    | ChildSaEstablished
    | ChildSaFailed
    | ChildSaDeleted
    | LivenessConfirmed
    | IkeSaRedirected
    | IkeSaMoved
    | ClientRedirected
)
