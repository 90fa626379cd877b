"""Redirects (RFC 5685 sections 5-6), both sides of the IKE SA.

Client: an N(REDIRECT) is acted on only if we offered to be redirected; in IKE_SA_INIT its
Nonce Data must equal our Ni (else it is a spoof and ignored), elsewhere it must carry
none. The endpoint's ``follow_redirect`` checks the allow-list and the loop limit and
starts the new IKE SA. Gateway: ``RedirectClient`` is the protected INFORMATIONAL
N(REDIRECT) of an established SA; the IKE_AUTH redirect is in ``ike_auth`` and the
stateless IKE_SA_INIT one in the endpoint.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger

from twisted_rserpool.ike.codec import (
    DeletePayload,
    GatewayIdentity,
    NotifyPayload,
    Payload,
    parse_redirect,
    redirect_notify,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.events import ClientRedirected, IkeSaRedirected
from twisted_rserpool.ike.state import State, StateEvent
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.window import Outstanding

if TYPE_CHECKING:
    from twisted_rserpool.ike.sa import IkeSa

__all__ = [
    "RedirectClient",
    "auth_redirect",
    "delete_redirected",
    "informational_redirect",
    "init_redirect",
    "redirect_client",
]

log = Logger()


def _target(sa: IkeSa, notify: NotifyPayload, exchange: str) -> GatewayIdentity | None:
    """The gateway of a REDIRECT we may act on, or None (the notify is then ignored)."""
    if not sa.client or not sa.config.follow_redirects:
        log.info(
            "ignoring REDIRECT from {peer}: we did not offer to be redirected",
            peer=sa.peer_address,
        )
        return None
    try:
        data = parse_redirect(notify)
    except InvalidIkeMessage as e:
        log.info(
            "ignoring malformed REDIRECT from {peer}: {error}", peer=sa.peer_address, error=e.reason
        )
        return None
    if exchange == "IKE_SA_INIT":
        if not hmac.compare_digest(data.nonce, sa.nonce_i):
            log.info(
                "ignoring REDIRECT from {peer} whose Nonce Data is not our Ni (spoofed?)",
                peer=sa.peer_address,
            )
            return None
    elif data.nonce:
        log.info(
            "ignoring REDIRECT with Nonce Data in {exchange} from {peer}",
            exchange=exchange,
            peer=sa.peer_address,
        )
        return None
    return data.gateway


def _follow(
    sa: IkeSa, gateway: GatewayIdentity, exchange: str, now: float
) -> IkeSaRedirected | None:
    """Ask the endpoint to start the SA with ``gateway``; the event, or None if refused."""
    new_spi, refusal = sa.host.follow_redirect(sa, gateway, exchange, now)
    if refusal is not None:
        log.info(
            "not following the redirect from {peer} to {gateway}: {reason}",
            peer=sa.peer_address,
            gateway=str(gateway),
            reason=refusal,
        )
        return None
    log.info(
        "redirected by {peer} to {gateway} in {exchange}",
        peer=sa.peer_address,
        gateway=str(gateway),
        exchange=exchange,
    )
    return IkeSaRedirected(
        sa.spi_i,
        sa.spi_r,
        sa.peer_address,
        gateway,
        exchange,
        new_spi,
        sa.peer_id,
        sa.authentication(),
    )


def init_redirect(sa: IkeSa, notify: NotifyPayload, now: float) -> None:
    """N(REDIRECT) answered our IKE_SA_INIT: close and move, or ignore a spoof."""
    gateway = _target(sa, notify, "IKE_SA_INIT")
    if gateway is None:
        return  # keep waiting for a genuine response (RFC 5685 section 3)
    event = _follow(sa, gateway, "IKE_SA_INIT", now)
    if event is None:
        sa.fail(f"redirect to {gateway} refused", NotifyType.REDIRECT)
        return
    sa.close(StateEvent.REDIRECTED, event)


def auth_redirect(sa: IkeSa, notify: NotifyPayload, now: float) -> None:
    """N(REDIRECT) in a verified IKE_AUTH response: move, then delete this SA."""
    gateway = _target(sa, notify, "IKE_AUTH")
    event = _follow(sa, gateway, "IKE_AUTH", now) if gateway is not None else None
    if event is None:
        sa.fail("redirected in IKE_AUTH (not followed)", NotifyType.REDIRECT)
        return
    sa.transition(StateEvent.AUTHENTICATED)
    sa.host.emit(event)
    sa.delete(now)


def informational_redirect(sa: IkeSa, notify: NotifyPayload, now: float) -> None:
    """N(REDIRECT) in an INFORMATIONAL request (answered already): start the new SA.

    This SA is deleted once the new one is established (``IkeSa.replaces``).
    """
    gateway = _target(sa, notify, "INFORMATIONAL")
    if gateway is not None:
        event = _follow(sa, gateway, "INFORMATIONAL", now)
        if event is not None:
            sa.host.emit(event)


class RedirectClient(Task):
    """Gateway: the protected INFORMATIONAL N(REDIRECT) that moves an established client."""

    exchange = ExchangeType.INFORMATIONAL
    name = "redirect"

    def __init__(self, sa: IkeSa, gateway: GatewayIdentity) -> None:
        super().__init__(sa)
        self.gateway = gateway

    def build(self, now: float) -> Sequence[Payload]:
        return (redirect_notify(self.gateway),)

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        """The client acknowledged; it deletes the SA, or we do at ``redirect_delete_at``."""


def redirect_client(sa: IkeSa, gateway: GatewayIdentity, reason: str, now: float) -> bool:
    """Start ``RedirectClient`` on ``sa`` (see ``IkeSa.redirect``)."""
    if (
        sa.state != State.ESTABLISHED
        or sa.client
        or not sa.redirect_supported
        or sa.redirect_delete_at is not None
    ):
        return False
    sa.queue(RedirectClient(sa, gateway), now)
    sa.redirect_delete_at = now + sa.config.redirect_delete_timeout
    sa.host.emit(
        ClientRedirected(sa.peer_address, gateway, reason, "INFORMATIONAL", sa.spi_i, sa.spi_r)
    )
    return True


def delete_redirected(sa: IkeSa) -> None:
    """Gateway: ``redirect_delete_timeout`` passed; delete the redirected client's SA.

    The client has moved on (or will not): one Delete, no waiting for its answer.
    """
    sa.redirect_delete_at = None
    log.info(
        "deleting IKE SA {spi_i}/{spi_r} of redirected client {peer}",
        spi_i=sa.spi_i.hex(),
        spi_r=sa.spi_r.hex(),
        peer=sa.peer_address,
    )
    message_id = sa.window.allocate()
    data = sa.seal(ExchangeType.INFORMATIONAL, message_id, False, [DeletePayload.ike_sa()])
    sa.host.send(data, sa.peer_address)
    sa.close(StateEvent.DELETED, sa.deleted_event("redirected"))
