"""NAT traversal of an IKE SA, without I/O (RFC 7296 section 2.23, RFC 3948).

The NAT detection hashes are made and checked in IKE_SA_INIT
(``twisted_rserpool.ike.tasks.ike_init``); this module moves an IKE SA between addresses:

- the float: an initiator that detects a NAT moves the IKE SA to UDP port 4500 after
  IKE_SA_INIT (``float_to_nat_t``); a responder follows the first authenticated request that
  arrives on its port 4500;
- rebinding: a NAT that forgets its mapping gives the peer a new address or port; the IKE SA
  follows it (``follow``) only on a request whose integrity checked and whose Message ID is
  the next one expected, never on an unauthenticated or replayed packet, and not when we are
  behind a NAT ourselves (a validated packet from elsewhere could then break the SA);
- NAT-keepalives: when we are behind a NAT, a one-octet 0xFF datagram every
  ``IkeConfig.nat_keepalive_interval`` seconds keeps the mapping (RFC 3948 section 4).

An SA's path is its ``peer_address`` and the port of its ``local_address``: our requests,
retransmissions and keepalives use it. Responses go to wherever the request came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike.constants import IKE_PORT
from twisted_rserpool.ike.events import IkeSaMoved

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import Address, IkeSa

__all__ = ["float_to_nat_t", "follow", "send_keepalive"]

log = Logger()


def float_to_nat_t(sa: IkeSa, now: float) -> bool:
    """Initiator after IKE_SA_INIT: move to port 4500 when a NAT was detected; True if moved.

    Our side moves to the endpoint's NAT-T port, or, without one, stays on a port other
    than 500 (IKE on it then carries the non-ESP marker); the peer's port becomes its NAT-T
    port (``IkeSa.peer_nat_t_port``, 4500).
    """
    if not (sa.peer_behind_nat or sa.local_behind_nat):
        return False
    peer_host, peer_port = sa.peer_address
    target = sa.peer_nat_t_port
    port = sa.local_address[1]
    local = sa.host.nat_t_port
    if local is None:
        if port == IKE_PORT:
            log.info(
                "NAT detected with {peer} but no NAT-T port to float to; staying on {port}",
                peer=sa.peer_address,
                port=port,
            )
            return False
        local = port
    if (peer_port, port) == (target, local):
        return False
    _move(sa, (peer_host, target), local, "NAT detected: float to NAT-T port")
    return True


def follow(sa: IkeSa, source: Address, local_port: int, now: float) -> bool:
    """A new authenticated request came from ``source`` to our ``local_port``; True if moved.

    Call only for a request whose integrity checked and whose Message ID is the next
    expected one. The first request on our NAT-T port is the peer's float and is always
    followed; any other change of address is a NAT rebinding, followed unless we are
    behind a NAT ourselves (RFC 7296 section 2.23).
    """
    if source == sa.peer_address and local_port == sa.local_address[1]:
        return False
    nat_t_port = sa.host.nat_t_port
    floated = (
        nat_t_port is not None and local_port == nat_t_port and sa.local_address[1] != nat_t_port
    )
    if not floated and sa.local_behind_nat:
        log.info(
            "IKE SA {spi_i}/{spi_r}: authenticated request from {source}, but we are behind a "
            "NAT; staying with {peer}",
            spi_i=sa.spi_i.hex(),
            spi_r=sa.spi_r.hex(),
            source=source,
            peer=sa.peer_address,
        )
        return False
    _move(sa, source, local_port, "peer floated to NAT-T port" if floated else "NAT rebinding")
    return True


def _move(sa: IkeSa, peer: Address, local_port: int, reason: str) -> None:
    old = sa.peer_address
    sa.peer_address = peer
    sa.local_address = (sa.local_address[0], local_port)
    log.info(
        "IKE SA {spi_i}/{spi_r} moved from {old} to {new} (local port {port}): {reason}",
        spi_i=sa.spi_i.hex(),
        spi_r=sa.spi_r.hex(),
        old=old,
        new=peer,
        port=local_port,
        reason=reason,
    )
    sa.host.emit(IkeSaMoved(sa.spi_i, sa.spi_r, sa.initiator, old, peer, local_port, reason))


def send_keepalive(sa: IkeSa, now: float) -> None:
    """Send a NAT-keepalive if one is due at ``now`` (RFC 3948 section 4).

    ``IkeSa.keepalive_due`` is set when the SA is established and we are behind a NAT.
    """
    due = sa.keepalive_due
    interval = sa.config.nat_keepalive_interval
    if due is None or interval is None or now < due:
        return
    sa.host.send_keepalive(sa.peer_address, sa.local_address[1])
    sa.keepalive_due = now + interval
