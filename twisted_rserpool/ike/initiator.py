"""Our IKEv2 initiator in Twisted: start IKE SAs and get Deferreds for their outcome.

Redirects (RFC 5685) are followed: the Deferred of ``initiate`` fires with the IKE SA
finally established with the new gateway, an FQDN target is resolved first, and every
redirect is reported to the failover observers (``IFailoverObserver``, the same notifier
as ASAP sessions) with a ``GatewayFailoverEvent``; a veto deletes the new IKE SA.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.asap.notifier import (
    FailoverDecision,
    GatewayFailoverEvent,
    IFailoverObserver,
    decide,
)
from twisted_rserpool.ike.constants import NAT_T_PORT
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRedirected,
    IkeSaRekeyed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.gateway import IkeDatagramProtocol
from twisted_rserpool.ike.sa import Address

__all__ = ["ChildSaRekeyFailed", "IkeInitiatorProtocol", "IkeSaSetupFailed"]


@dataclass(frozen=True)
class _Move:
    """A redirect waiting for the IKE SA with the new gateway."""

    redirect: IkeSaRedirected
    old_authentication: str


class ChildSaRekeyFailed(Exception):
    """The peer refused our CHILD_SA rekey (the old CHILD_SA stays); carries the event."""

    def __init__(self, event: ChildSaFailed) -> None:
        super().__init__(event.reason)
        self.event = event


class IkeSaSetupFailed(Exception):
    """An IKE SA we initiated failed (or went away before an answer); carries the event."""

    def __init__(self, event: IkeSaFailed | IkeSaDeleted) -> None:
        super().__init__(event.reason)
        self.event = event


class IkeInitiatorProtocol(IkeDatagramProtocol):
    """Initiates IKE SAs from the UDP port it is bound to.

    ``initiate`` fires with the ``IkeSaEstablished`` event; ``checkLiveness`` with
    ``LivenessConfirmed``; ``deleteIkeSa`` with ``IkeSaDeleted``; ``rekeyIkeSa`` with
    ``IkeSaRekeyed`` (use its new ``spi_i`` afterwards); ``rekeyChildSa`` with the new
    CHILD_SA's ``ChildSaEstablished`` (or fails with ``ChildSaRekeyFailed``). They fail with
    ``IkeSaSetupFailed`` when the IKE SA fails or disappears first.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IkeEndpoint,
        clock: IReactorTime,
        failoverObservers: list[IFailoverObserver] | None = None,
        resolver: Any = None,
    ) -> None:
        super().__init__(endpoint, clock)
        self.failoverObservers: list[IFailoverObserver] = list(failoverObservers or [])
        self.resolver = resolver
        self.redirects: list[GatewayFailoverEvent] = []
        self._moves: dict[bytes, _Move] = {}
        self._suites: dict[bytes, str] = {}
        self._established: dict[bytes, Deferred[IkeSaEstablished]] = {}
        self._liveness: dict[bytes, list[Deferred[LivenessConfirmed]]] = {}
        self._deleted: dict[bytes, list[Deferred[IkeSaDeleted]]] = {}
        self._rekeyed: dict[bytes, list[Deferred[IkeSaRekeyed]]] = {}
        self._childRekeyed: dict[bytes, list[Deferred[ChildSaEstablished]]] = {}

    def initiate(
        self, peer: Address, natTraversalPort: int = NAT_T_PORT
    ) -> Deferred[IkeSaEstablished]:
        """Start an IKE SA with ``peer``; fires once IKE_AUTH completes.

        When IKE_SA_INIT detects a NAT the SA floats to the peer's ``natTraversalPort``
        (RFC 7296 section 2.23), from our NAT traversal socket when there is one
        (``listenNatTraversal``).
        """
        spi = self.endpoint.initiate(peer, self.clock.seconds(), peer_nat_t_port=natTraversalPort)
        d: Deferred[IkeSaEstablished] = Deferred()
        self._established[spi] = d
        self.flush()
        return d

    def checkLiveness(self, spi: bytes) -> Deferred[LivenessConfirmed]:
        """Send a liveness check on the IKE SA with SPIi ``spi``."""
        d: Deferred[LivenessConfirmed] = Deferred()
        self._liveness.setdefault(spi, []).append(d)
        self.endpoint.check_liveness(spi, self.clock.seconds())
        self.flush()
        return d

    def deleteIkeSa(self, spi: bytes) -> Deferred[IkeSaDeleted]:
        """Delete the IKE SA with SPIi ``spi``."""
        d: Deferred[IkeSaDeleted] = Deferred()
        self._deleted.setdefault(spi, []).append(d)
        self.endpoint.delete_ike_sa(spi, self.clock.seconds())
        self.flush()
        return d

    def rekeyIkeSa(self, spi: bytes) -> Deferred[IkeSaRekeyed]:
        """Rekey the IKE SA with SPIi ``spi``; fires with the new SA's SPIs."""
        d: Deferred[IkeSaRekeyed] = Deferred()
        if not self.endpoint.rekey_ike_sa(spi, self.clock.seconds()):
            d.errback(ValueError(f"IKE SA {spi.hex()} cannot be rekeyed now"))
            return d
        self._rekeyed.setdefault(spi, []).append(d)
        self.flush()
        return d

    def rekeyChildSa(self, spi: bytes, inboundSpi: bytes) -> Deferred[ChildSaEstablished]:
        """Rekey the CHILD_SA ``inboundSpi`` (our ESP SPI) of the IKE SA with SPIi ``spi``.

        Fires with the new CHILD_SA once it is installed (the old one is then deleted).
        """
        d: Deferred[ChildSaEstablished] = Deferred()
        if not self.endpoint.rekey_child_sa(spi, inboundSpi, self.clock.seconds()):
            d.errback(ValueError(f"no CHILD_SA {inboundSpi.hex()} to rekey"))
            return d
        self._childRekeyed.setdefault(spi, []).append(d)
        self.flush()
        return d

    def ikeEventReceived(self, event: IkeEvent) -> None:
        """Fire the Deferreds waiting for this event, then log it."""
        super().ikeEventReceived(event)
        if isinstance(event, IkeSaRedirected):
            self._redirected(event)
        elif isinstance(event, IkeSaEstablished):
            if event.authentication is not None:
                self._suites[event.spi_i] = event.authentication
            move = self._moves.pop(event.spi_i, None)
            if move is not None:
                self._report(move, event)
            waiting = self._established.pop(event.spi_i, None)
            if waiting is not None:
                waiting.callback(event)
        elif isinstance(event, IkeSaRekeyed):
            for done in self._rekeyed.pop(event.old_spi_i, []):
                done.callback(event)
        elif isinstance(event, LivenessConfirmed):
            for d in self._liveness.pop(event.spi_i, []):
                d.callback(event)
        elif isinstance(event, ChildSaEstablished):
            # CHILD_SA rekeys of one IKE SA are answered in order (window of one).
            waiting_children = self._childRekeyed.get(event.child.ike_spi_i)
            if waiting_children:
                waiting_children.pop(0).callback(event)
        elif isinstance(event, ChildSaFailed):
            waiting_children = self._childRekeyed.get(event.spi_i)
            if waiting_children:
                waiting_children.pop(0).errback(ChildSaRekeyFailed(event))
        elif isinstance(event, IkeSaFailed | IkeSaDeleted):
            self._moves.pop(event.spi_i, None)
            self._suites.pop(event.spi_i, None)
            failure = IkeSaSetupFailed(event)
            pending = self._established.pop(event.spi_i, None)
            if pending is not None:
                pending.errback(failure)
            for live in self._liveness.pop(event.spi_i, []):
                live.errback(failure)
            for rekey in self._rekeyed.pop(event.spi_i, []):
                rekey.errback(failure)
            for child in self._childRekeyed.pop(event.spi_i, []):
                child.errback(failure)
            for deleted in self._deleted.pop(event.spi_i, []):
                if isinstance(event, IkeSaDeleted):
                    deleted.callback(event)
                else:
                    deleted.errback(failure)

    # --- redirects ----------------------------------------------------------------------

    def _redirected(self, event: IkeSaRedirected) -> None:
        """Carry the waiting Deferreds over to the IKE SA with the new gateway."""
        # The old gateway's AUTH was verified before an IKE_AUTH or INFORMATIONAL redirect;
        # in IKE_SA_INIT nothing was.
        auth = event.authentication or self._suites.get(event.spi_i, "none")
        if event.new_spi_i is None:
            self._resolve(event, auth)
            return
        self._adopt(event, event.new_spi_i, auth)

    def _adopt(self, event: IkeSaRedirected, spi: bytes, auth: str) -> None:
        self._moves[spi] = _Move(event, auth)
        waiting = self._established.pop(event.spi_i, None)
        if waiting is not None:
            self._established[spi] = waiting

    def _resolve(self, event: IkeSaRedirected, auth: str) -> None:
        """Resolve an FQDN target, then start the IKE SA with it."""
        name = str(event.new_gateway)
        resolver = self.resolver
        if resolver is None:
            from twisted.internet import reactor  # noqa: PLC0415 (lazy default)

            resolver = reactor
        d: Deferred[str] = resolver.resolve(name)
        waiting = self._established.pop(event.spi_i, None)

        def resolved(address: str) -> None:
            sa_spi = self.endpoint.initiate(
                (address, self.endpoint.config.redirect_port),
                self.clock.seconds(),
                redirected_from=ipaddress.ip_address(event.peer_address[0]),
                replaces=event.spi_i if event.exchange == "INFORMATIONAL" else None,
            )
            self._moves[sa_spi] = _Move(event, auth)
            if waiting is not None:
                self._established[sa_spi] = waiting
            self.flush()

        def failed(reason: Failure) -> None:
            self.log.info(
                "cannot resolve redirect target {name}: {error}",
                name=name,
                error=reason.getErrorMessage(),
            )
            if waiting is not None:
                waiting.errback(
                    IkeSaSetupFailed(
                        IkeSaFailed(
                            event.spi_i,
                            event.spi_r,
                            True,
                            event.peer_address,
                            f"cannot resolve redirect target {name}",
                        )
                    )
                )

        d.addCallbacks(resolved, failed)

    def _report(self, move: _Move, event: IkeSaEstablished) -> None:
        """Tell the failover observers; a veto deletes the new IKE SA."""
        redirect = move.redirect
        old_host, old_port = redirect.peer_address
        new_host, new_port = event.peer_address
        report = GatewayFailoverEvent(
            old_gateway=f"{old_host}:{old_port}",
            new_gateway=f"{new_host}:{new_port}",
            old_identity=str(redirect.peer_id) if redirect.peer_id is not None else None,
            new_identity=str(event.peer_id),
            old_authentication=move.old_authentication,
            new_authentication=event.authentication or "none",
            reason=f"redirected in {redirect.exchange}",
            number=len(self.redirects) + 1,
        )
        self.redirects.append(report)
        self.log.info("{event}", event=report.describe())

        def decided(decision: FailoverDecision) -> None:
            if not decision.allowed and self.endpoint.get(event.spi_i) is not None:
                self.log.info(
                    "redirect to {gateway} refused ({reason}): deleting the IKE SA",
                    gateway=report.new_gateway,
                    reason=decision.reason,
                )
                self.endpoint.delete_ike_sa(event.spi_i, self.clock.seconds())
                self.flush()

        decide(report, self.failoverObservers, refuseWeaker=False).addCallback(decided)
