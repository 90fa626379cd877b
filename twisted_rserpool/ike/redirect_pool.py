"""VPN gateways as an RSerPool pool: each gateway registers itself as a pool element whose
Least Used load is its share of IKE SAs, and a redirecting gateway picks targets from the
pool through the ASAP pool user (TLS to the ENRP server).

``GatewayRegistration`` keeps a gateway's registration current; ``PoolGateways`` is an
``IGatewaySource`` whose picks are the least loaded gateways the ENRP server listed in its
latest answer. A pick is synchronous (the endpoint decides while it handles a datagram), so
the pool is resolved every ``refreshInterval`` seconds and a gateway the server no longer
lists disappears from the picks with the next answer; a gateway picked since the last
answer counts one more SA (the policy's degradation), so a burst of clients is spread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap.element import PoolElement
from twisted_rserpool.asap.errors import ResolutionFailed
from twisted_rserpool.asap.user import PoolUser
from twisted_rserpool.describe import handleText
from twisted_rserpool.ike.codec import GatewayIdentity
from twisted_rserpool.ike.redirect import IGatewaySource, same_gateway
from twisted_rserpool.poolmember.description import FULL_LOAD, scaledLoad
from twisted_rserpool.poolmember.registration import MemberRegistration
from twisted_rserpool.poolmember.sources import CallableLoad
from twisted_rserpool.wire.parameters import LeastUsedPolicy, PoolElementParameter

__all__ = ["FULL_LOAD", "GatewayRegistration", "PoolGateway", "PoolGateways", "scaledLoad"]


class GatewayRegistration(MemberRegistration):
    """Registers a gateway as a pool element and re-registers when its load changes.

    ``load()`` is the gateway's share of its capacity (0 to 1); it is read every
    ``interval`` seconds and a change re-registers at once (``PoolElement.updateLoad``).
    The pool element registers the gateway's IKE address as a UDP user transport (see
    :class:`~twisted_rserpool.poolmember.registration.MemberRegistration`, which
    ``twistd poolmember`` runs for gateways of other implementations).
    """

    def __init__(
        self, element: PoolElement, load: Callable[[], float], clock: IReactorTime, interval: float
    ) -> None:
        super().__init__(element, CallableLoad(load), clock, interval, policy=LeastUsedPolicy(0))
        self.load = load


@dataclass(frozen=True)
class PoolGateway:
    """One gateway of the pool: its address, PE identifier and Least Used load."""

    address: IPv4Address | IPv6Address
    pe_identifier: int
    load: int


def gatewayOf(element: PoolElementParameter) -> PoolGateway | None:
    """The gateway a pool element stands for (its user transport address), if any."""
    address = getattr(element.user_transport, "address", None)
    if not isinstance(address, IPv4Address | IPv6Address):
        return None
    load = getattr(element.policy, "load", FULL_LOAD)
    return PoolGateway(address, element.pe_identifier, int(load))


@implementer(IGatewaySource)
class PoolGateways(Service):
    """The gateways of an RSerPool pool, least loaded first (see the module docstring).

    ``step`` is the load one more SA adds (the degradation applied to a picked gateway
    until the next answer).
    """

    log = Logger()

    def __init__(
        self,
        user: PoolUser,
        poolHandle: bytes,
        clock: IReactorTime,
        refreshInterval: float = 1.0,
        step: int = FULL_LOAD // 10000,
    ) -> None:
        self.user = user
        self.poolHandle = poolHandle
        self.clock = clock
        self.refreshInterval = refreshInterval
        self.step = step
        self.listed: list[PoolGateway] = []
        self._picked: dict[int, int] = {}
        self._loop: LoopingCall | None = None
        self.answers = 0

    def startService(self) -> None:
        """Start the pool user and resolve the pool periodically."""
        super().startService()  # type: ignore[no-untyped-call]
        self.user.startService()
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = self.clock
        self._loop.start(self.refreshInterval, now=True)

    def stopService(self) -> Any:
        """Stop resolving and stop the pool user."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        return self.user.stopService()

    def refresh(self) -> Deferred[None]:
        """Resolve the pool now; the answer replaces the listed gateways."""
        d = self.user.resolve(self.poolHandle, refresh=True)
        return d.addCallbacks(self._answered, self._failed)

    def _answered(self, elements: list[PoolElementParameter]) -> None:
        listed = [g for g in map(gatewayOf, elements) if g is not None]
        self.listed = listed
        self._picked = {}
        self.answers += 1

    def _failed(self, reason: Failure) -> None:
        if reason.check(ResolutionFailed):  # type: ignore[no-untyped-call]
            self.listed = []  # the server lists no gateway in the pool
        self.log.info(
            "resolving gateway pool {pool} failed: {error}",
            pool=handleText(self.poolHandle),
            error=reason.getErrorMessage(),
        )

    def gateways(self) -> list[GatewayIdentity]:
        """The gateways of the latest answer."""
        return [g.address for g in self.listed]

    def pick(self, exclude: Sequence[str]) -> GatewayIdentity | None:
        """The least loaded listed gateway not excluded (ties: the fewest picks, then order)."""
        best: PoolGateway | None = None
        bestLoad = 0
        for gateway in self.listed:
            if any(same_gateway(gateway.address, host) for host in exclude):
                continue
            load = gateway.load + self._picked.get(gateway.pe_identifier, 0) * self.step
            if best is None or load < bestLoad:
                best, bestLoad = gateway, load
        if best is None:
            return None
        self._picked[best.pe_identifier] = self._picked.get(best.pe_identifier, 0) + 1
        return best.address
