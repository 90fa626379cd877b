"""The failover notifier (RFC 5355 section 2.9): the application hears of every failover,
with the security of the old and the new connection, and may refuse it.

Observers provide :class:`IFailoverObserver`. A session calls every observer once the
connection to the new pool element is up and before any application data, cookie or
business card flows to it; an observer that returns ``False`` (or a Deferred that fires
``False``) vetoes the failover and the session closes with
:class:`~twisted_rserpool.asap.errors.FailoverRefused`. Without a veto, a failover to a
weaker :class:`~twisted_rserpool.security.context.SecurityContext` is still refused unless
the pool user was created with ``refuseWeakerFailover=False``.

The same observers hear of IKE SAs moved between VPN gateways by an RFC 5685 redirect
(:class:`GatewayFailoverEvent`, reported by ``twisted_rserpool.ike.initiator``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from twisted_rserpool.describe import handleText, objectText
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire.parameters import PoolElementParameter

__all__ = [
    "FailoverDecision",
    "FailoverEvent",
    "GatewayFailoverEvent",
    "IFailoverObserver",
    "decide",
    "describePE",
]

log = Logger()


def describePE(element: PoolElementParameter | None) -> str:
    """A pool element in one short phrase: identifier and user transport address."""
    if element is None:
        return "no pool element"
    transport = element.user_transport
    address = getattr(transport, "address", None)
    port = getattr(transport, "port", None)
    where = f" at {address}:{port}" if address is not None and port is not None else ""
    return f"PE 0x{element.pe_identifier:08x}{where}"


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """One failover of a session from ``old_element`` to ``new_element``.

    ``reason`` says why the old pool element was left (connection lost, heartbeat timeout,
    asked by the application). ``cookie`` is the cookie that will be echoed to the new pool
    element (``None``: the old one sent none) and ``resend`` the number of application
    messages the old pool element had not acknowledged and that will be sent again.
    """

    pool_handle: bytes
    old_element: PoolElementParameter
    new_element: PoolElementParameter
    old_context: SecurityContext
    new_context: SecurityContext
    reason: str
    number: int
    cookie: bytes | None = None
    resend: int = 0

    @property
    def changed(self) -> bool:
        """Whether the new connection's security differs from the old one's in any way
        (TLS version, cipher, peer identity, authentication)."""
        return self.old_context != self.new_context

    @property
    def weaker(self) -> bool:
        """Whether the new connection offers less: authentication lost or an older TLS."""
        return self.new_context.is_weaker_than(self.old_context)

    def describe(self) -> str:
        """One line for logs and notifications."""
        change = "weaker" if self.weaker else "changed" if self.changed else "unchanged"
        return (
            f"failover #{self.number} of pool {handleText(self.pool_handle)} from "
            f"{describePE(self.old_element)} to {describePE(self.new_element)} "
            f"({self.reason}); security {change}: [{self.old_context.describe()}] -> "
            f"[{self.new_context.describe()}]"
        )


@dataclass(frozen=True, slots=True)
class GatewayFailoverEvent:
    """An IKE SA moved from ``old_gateway`` to ``new_gateway`` (an RFC 5685 redirect).

    The gateways are ``host:port``; the identities are the IKE identities each gateway
    authenticated with (``old_identity`` is None when the redirect came in IKE_SA_INIT,
    before any authentication) and the authentications name the method and suite.
    ``reason`` is the exchange that carried the REDIRECT; ``number`` counts the redirects
    of this client.
    """

    old_gateway: str
    new_gateway: str
    old_identity: str | None
    new_identity: str
    old_authentication: str
    new_authentication: str
    reason: str
    number: int

    @property
    def changed(self) -> bool:
        """Whether the new gateway authenticated differently (identity or method)."""
        return (self.old_identity, self.old_authentication) != (
            self.new_identity,
            self.new_authentication,
        )

    @property
    def weaker(self) -> bool:
        """Whether the new gateway is unauthenticated while the old one was."""
        return self.old_identity is not None and not self.new_identity

    def describe(self) -> str:
        """One line for logs and notifications."""
        return (
            f"redirect #{self.number} ({self.reason}) from gateway {self.old_gateway} "
            f"[{self.old_identity or 'unauthenticated'}, {self.old_authentication}] to "
            f"{self.new_gateway} [{self.new_identity}, {self.new_authentication}]"
        )


class IFailoverObserver(Interface):
    """Told of every failover of the sessions of a pool user; may veto it."""

    def failoverOccurred(event: FailoverEvent) -> Any:  # noqa: N805
        """A session is about to resume on ``event.new_element`` (or, for a
        ``GatewayFailoverEvent``, an IKE SA was moved to ``event.new_gateway``).

        Return ``True``/``None`` to let it go on, ``False`` to refuse it, or a Deferred
        firing one of those. Nothing flows to the new pool element before the answer.
        An observer that raises or fails counts as a veto (failing closed).
        """


class IPoolUserSession(Interface):
    """What a pool user's session transport offers beyond ``ITransport``."""

    poolHandle = Attribute("The pool handle the session is bound to (bytes).")
    poolElement = Attribute("The current pool element (a PoolElementParameter), or None.")
    securityContext = Attribute("The SecurityContext of the current connection, or None.")
    cookie = Attribute("The last cookie received from a pool element, or None.")
    failovers = Attribute("The failovers this session made so far (FailoverEvent list).")
    options = Attribute("The session's delivery default: SEND_FAILOVER or SEND_NO_FAILOVER.")
    peHandle = Attribute("The current pool element's PoolElementHandle, or None.")
    undelivered = Attribute(
        "Once closed: the UndeliveredMessage values the session did not deliver (RFC 5352 6.7)."
    )

    def send(data: bytes, options: Any) -> None:  # noqa: N805
        """Send one application message with RFC 5352 6.5.5 options (SendOptions)."""

    def failover() -> Deferred[None]:
        """Leave the current pool element now and resume on another one."""

    def sendBusinessCard(elements: Any, policy: Any) -> None:  # noqa: N805
        """Send an ASAP_BUSINESS_CARD (for a PU/PE combination) to the pool element."""


@dataclass(frozen=True, slots=True)
class FailoverDecision:
    """What the observers and the default rule decided about one failover."""

    allowed: bool
    reason: str = ""


def decide(
    event: FailoverEvent | GatewayFailoverEvent,
    observers: Iterable[IFailoverObserver],
    refuseWeaker: bool,
) -> Deferred[FailoverDecision]:
    """Ask every observer (all of them, even after a veto, so each hears of the failover),
    then apply the default rule against weaker security."""

    async def run() -> FailoverDecision:
        veto: str | None = None
        for observer in list(observers):
            try:
                notify: Callable[[Any], Any] = observer.failoverOccurred
                answer = await maybeDeferred(notify, event)
            except Exception:
                log.failure(
                    "Failover observer {observer} failed: counted as a veto",
                    observer=objectText(observer),
                )
                answer = False
            if answer is False and veto is None:
                veto = f"vetoed by {type(observer).__name__}"
        if veto is not None:
            return FailoverDecision(False, veto)
        if refuseWeaker and event.weaker:
            return FailoverDecision(
                False, "the new pool element's security context is weaker than the old one's"
            )
        return FailoverDecision(True)

    return Deferred.fromCoroutine(run())
