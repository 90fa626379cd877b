"""Our IKEv2 initiator in Twisted: start IKE SAs and get Deferreds for their outcome."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.gateway import IkeDatagramProtocol
from twisted_rserpool.ike.sa import Address

__all__ = ["IkeInitiatorProtocol", "IkeSaSetupFailed"]


class IkeSaSetupFailed(Exception):
    """An IKE SA we initiated failed (or went away before an answer); carries the event."""

    def __init__(self, event: IkeSaFailed | IkeSaDeleted) -> None:
        super().__init__(event.reason)
        self.event = event


class IkeInitiatorProtocol(IkeDatagramProtocol):
    """Initiates IKE SAs from the UDP port it is bound to.

    ``initiate`` fires with the ``IkeSaEstablished`` event; ``checkLiveness`` with
    ``LivenessConfirmed``; ``deleteIkeSa`` with ``IkeSaDeleted``; ``rekeyIkeSa`` with
    ``IkeSaRekeyed`` (use its new ``spi_i`` afterwards). They fail with
    ``IkeSaSetupFailed`` when the IKE SA fails or disappears first.
    """

    def __init__(self, endpoint: IkeEndpoint, clock: IReactorTime) -> None:
        super().__init__(endpoint, clock)
        self._established: dict[bytes, Deferred[IkeSaEstablished]] = {}
        self._liveness: dict[bytes, list[Deferred[LivenessConfirmed]]] = {}
        self._deleted: dict[bytes, list[Deferred[IkeSaDeleted]]] = {}
        self._rekeyed: dict[bytes, list[Deferred[IkeSaRekeyed]]] = {}

    def initiate(self, peer: Address) -> Deferred[IkeSaEstablished]:
        """Start an IKE SA with ``peer``; fires once IKE_AUTH completes."""
        spi = self.endpoint.initiate(peer, self.clock.seconds())
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

    def ikeEventReceived(self, event: IkeEvent) -> None:
        """Fire the Deferreds waiting for this event, then log it."""
        super().ikeEventReceived(event)
        if isinstance(event, IkeSaEstablished):
            waiting = self._established.pop(event.spi_i, None)
            if waiting is not None:
                waiting.callback(event)
        elif isinstance(event, IkeSaRekeyed):
            for done in self._rekeyed.pop(event.old_spi_i, []):
                done.callback(event)
        elif isinstance(event, LivenessConfirmed):
            for d in self._liveness.pop(event.spi_i, []):
                d.callback(event)
        elif isinstance(event, IkeSaFailed | IkeSaDeleted):
            failure = IkeSaSetupFailed(event)
            pending = self._established.pop(event.spi_i, None)
            if pending is not None:
                pending.errback(failure)
            for live in self._liveness.pop(event.spi_i, []):
                live.errback(failure)
            for rekey in self._rekeyed.pop(event.spi_i, []):
                rekey.errback(failure)
            for deleted in self._deleted.pop(event.spi_i, []):
                if isinstance(event, IkeSaDeleted):
                    deleted.callback(event)
                else:
                    deleted.errback(failure)
