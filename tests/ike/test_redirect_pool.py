"""Gateways from an RSerPool pool (``PoolGateways``) and the load a gateway registers."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from twisted_rserpool.asap.errors import RequestTimedOut, ResolutionFailed
from twisted_rserpool.ike.redirect import RedirectPolicy, RedirectRequest
from twisted_rserpool.ike.redirect_pool import (
    FULL_LOAD,
    GatewayRegistration,
    PoolGateways,
    scaledLoad,
)
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    PoolElementParameter,
    TcpTransport,
)


def element(identifier: int, host: str, load: int) -> PoolElementParameter:
    return PoolElementParameter(
        identifier, 1, 30, TcpTransport(4000, IPv4Address(host)), LeastUsedPolicy(load)
    )


class FakeUser:
    """Answers handle resolutions with what the test put in ``answer``."""

    def __init__(self) -> None:
        self.answer: list[PoolElementParameter] | Exception = []
        self.resolutions = 0
        self.started = False

    def resolve(self, handle: bytes, *, refresh: bool = False) -> Deferred[Any]:
        self.resolutions += 1
        if isinstance(self.answer, Exception):
            return fail(self.answer)
        return succeed(list(self.answer))

    def startService(self) -> None:
        self.started = True

    def stopService(self) -> Deferred[None]:
        self.started = False
        return succeed(None)


def pool(*elements: PoolElementParameter) -> tuple[PoolGateways, FakeUser, Clock]:
    user, clock = FakeUser(), Clock()
    user.answer = list(elements)
    gateways = PoolGateways(user, b"vpngw", clock, refreshInterval=1.0, step=10)  # type: ignore[arg-type]
    gateways.startService()
    return gateways, user, clock


def test_least_loaded_first_with_degradation() -> None:
    """Picks go to the least loaded listed gateway; each pick counts one step of load
    until the next answer, so a burst is spread over equal gateways."""
    gateways, user, _clock = pool(
        element(1, "127.0.0.5", 100), element(2, "127.0.0.6", 5), element(3, "127.0.0.7", 5)
    )
    assert user.started and user.resolutions == 1
    picks = [str(gateways.pick([])) for _ in range(4)]
    assert picks == ["127.0.0.6", "127.0.0.7", "127.0.0.6", "127.0.0.7"]
    assert str(gateways.pick(["127.0.0.6", "127.0.0.7"])) == "127.0.0.5"
    assert gateways.pick(["127.0.0.5", "127.0.0.6", "127.0.0.7"]) is None


def test_refresh_replaces_the_listed_gateways() -> None:
    """A gateway the server no longer lists is never picked after the next answer; an
    unknown pool empties the list, a timed-out resolution keeps the last answer."""
    gateways, user, clock = pool(element(1, "127.0.0.5", 0), element(2, "127.0.0.6", 50))
    assert str(gateways.pick([])) == "127.0.0.5"
    user.answer = [element(2, "127.0.0.6", 50)]
    clock.advance(1.0)
    assert user.resolutions == 2 and gateways.gateways() == [IPv4Address("127.0.0.6")]
    assert str(gateways.pick([])) == "127.0.0.6"
    user.answer = RequestTimedOut(b"vpngw")
    clock.advance(1.0)
    assert gateways.gateways() == [IPv4Address("127.0.0.6")]
    user.answer = ResolutionFailed(b"vpngw", None)
    clock.advance(1.0)
    assert gateways.gateways() == [] and gateways.pick([]) is None
    gateways.stopService()
    assert not user.started and clock.getDelayedCalls() == []


def test_overloaded_gateway_never_redirects_to_itself() -> None:
    """A pool gateway over its limit redirects new clients to the least loaded other one,
    even when it is itself the least loaded in the last answer."""
    gateways, _user, _clock = pool(element(1, "127.0.0.5", 0), element(2, "127.0.0.6", 70))
    policy = RedirectPolicy(gateways, max_ike_sas=1)
    request = RedirectRequest("IKE_SA_INIT", ("127.0.0.1", 1500), ("127.0.0.5", 500), 3, 0.0)
    decision = policy.decide(request)
    assert decision is not None and str(decision.gateway) == "127.0.0.6"


class FakeElement:
    poolHandle = b"vpngw"

    def __init__(self) -> None:
        self.policy: Any = None
        self.registered = True
        self.loads: list[int] = []
        self.running = False

    def startService(self) -> None:
        self.running = True

    def stopService(self) -> Deferred[None]:
        self.running = False
        return succeed(None)

    def updateLoad(self, load: int) -> Deferred[None]:
        self.loads.append(load)
        return succeed(None)


def test_registration_follows_the_load() -> None:
    """The gateway registers with its load share as the Least Used value and re-registers
    only when it changes."""
    share = [0.0]
    pe, clock = FakeElement(), Clock()
    registration = GatewayRegistration(pe, lambda: share[0], clock, 0.5)  # type: ignore[arg-type]
    registration.startService()
    assert pe.running and pe.policy == LeastUsedPolicy(0)
    clock.advance(0.5)
    assert pe.loads == []
    share[0] = 0.5
    clock.advance(0.5)
    clock.advance(0.5)
    assert pe.loads == [scaledLoad(0.5)]
    share[0] = 2.0
    clock.advance(0.5)
    assert pe.loads[-1] == FULL_LOAD
    registration.stopService()
    assert not pe.running and clock.getDelayedCalls() == []
