"""What an IKE SA needs from the endpoint that owns it (``twisted_rserpool.ike.endpoint``
is the one that does): sending, events, its timer, the SA table, redirect decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted_rserpool.ike.child import IChildSAInstaller
from twisted_rserpool.ike.codec import GatewayIdentity
from twisted_rserpool.ike.events import IkeEvent
from twisted_rserpool.ike.redirect import RedirectDecision

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = ["Address", "IkeSaHost"]

Address = tuple[str, int]


class IkeSaHost(Protocol):
    """What an IKE SA needs from the endpoint that owns it."""

    installer: IChildSAInstaller
    nat_t_port: int | None
    """Our UDP port for NAT traversal (4500), or None without one."""

    def send(self, data: bytes, address: Address, local_port: int | None = None) -> None:
        """Send an IKE message from ``local_port`` (default: the main port); the endpoint
        adds the non-ESP marker where needed."""

    def send_keepalive(self, address: Address, local_port: int) -> None:
        """Send a NAT-keepalive (RFC 3948 section 2.3)."""

    def emit(self, event: IkeEvent) -> None:
        """Report an event to the user."""

    def reschedule(self, sa: IkeSa) -> None:
        """The SA's deadline may have changed."""

    def closed(self, sa: IkeSa) -> None:
        """The SA reached CLOSED: forget it."""

    def half_open_finished(self, sa: IkeSa) -> None:
        """A responder SA left INIT_DONE (it no longer counts as half-open)."""

    def new_spi(self) -> bytes:
        """A fresh IKE SPI of ours, unused in the SA table."""

    def follow_redirect(
        self, sa: IkeSa, gateway: GatewayIdentity, exchange: str, now: float
    ) -> tuple[bytes | None, str | None]:
        """Start an IKE SA with ``gateway`` after ``sa`` was redirected.

        Returns (new SPIi or None for an FQDN left to the caller, None) or (None, why the
        redirect is refused).
        """

    def redirect_decision(self, sa: IkeSa, exchange: str, now: float) -> RedirectDecision | None:
        """Whether the gateway's policy redirects this authenticated client."""

    def adopt(self, sa: IkeSa) -> None:
        """Add an SA made by a rekey to the SA table."""

    def wake(self) -> None:
        """Output or events wait outside a receive or timer call (an asynchronous EAP back
        end answered): the adapter should send and deliver them now."""
