"""Our Twisted initiator follows redirects: FQDN targets resolved, the ``initiate``
Deferred carried to the new gateway, every move told to the failover observers."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from tests.ike.test_redirect import CL, A, B, config, static
from twisted_rserpool.asap.notifier import GatewayFailoverEvent, IFailoverObserver
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeSaEstablished
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol, IkeSaSetupFailed


class Resolver:
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    def resolve(self, name: str) -> Deferred[str]:
        self.asked.append(name)
        if name in self.names:
            return succeed(self.names[name])
        return fail(OSError(f"unknown host {name}"))


@implementer(IFailoverObserver)
class Observer:
    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.events: list[GatewayFailoverEvent] = []

    def failoverOccurred(self, event: Any) -> bool:
        self.events.append(event)
        return self.answer


class Wire:
    """Carries the initiator's datagrams to in-memory gateways and their answers back."""

    def __init__(self, protocol: IkeInitiatorProtocol, gateways: dict[Any, IkeEndpoint]):
        self.protocol = protocol
        self.gateways = gateways

    def write(self, data: bytes, address: tuple[str, int]) -> None:
        gateway = self.gateways.get(address)
        if gateway is not None:
            gateway.receive_datagram(data, CL, self.protocol.clock.seconds())

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for address, gateway in self.gateways.items():
                for data, _destination in gateway.datagrams_to_send():
                    moved = True
                    self.protocol.datagramReceived(data, address)
            if not moved:
                return
        raise AssertionError("endless exchange")


def setup(
    observer: Observer, names: dict[str, str]
) -> tuple[IkeInitiatorProtocol, Wire, IkeEndpoint]:
    gw_a = IkeEndpoint(config("gw@test"), A, redirect_policy=static("vpn-b.example", always=True))
    gw_b = IkeEndpoint(config("gw@test"), B)
    client = IkeEndpoint(config("client@test"), CL)
    protocol = IkeInitiatorProtocol(
        client, Clock(), failoverObservers=[observer], resolver=Resolver(names)
    )
    wire = Wire(protocol, {A: gw_a, B: gw_b})
    protocol.transport = wire  # type: ignore[assignment]
    return protocol, wire, gw_b


def test_fqdn_redirect_followed_and_reported() -> None:
    """The redirect to an FQDN is resolved, the IKE SA is built with the address found,
    ``initiate`` fires with it, and the observer hears of the move (unauthenticated old
    gateway, authenticated new one)."""
    observer = Observer()
    protocol, wire, gw_b = setup(observer, {"vpn-b.example": "127.0.0.3"})
    results: list[IkeSaEstablished] = []
    protocol.initiate(A).addCallback(results.append)
    wire.pump()
    wire.pump()
    (up,) = results
    assert up.peer_address == B and len(gw_b) == 1
    (event,) = observer.events
    assert event.old_gateway == "127.0.0.2:500" and event.new_gateway == "127.0.0.3:500"
    assert event.old_identity is None and event.new_identity == "gw@test"
    assert event.reason == "redirected in IKE_SA_INIT" and event.number == 1
    assert event.changed and not event.weaker and "redirect #1" in event.describe()
    assert protocol.redirects == [event]


def test_veto_deletes_the_new_sa() -> None:
    """An observer's veto deletes the IKE SA with the new gateway."""
    observer = Observer(answer=False)
    protocol, wire, gw_b = setup(observer, {"vpn-b.example": "127.0.0.3"})
    protocol.initiate(A)
    wire.pump()
    wire.pump()
    assert len(observer.events) == 1
    assert len(gw_b) == 0 and len(protocol.endpoint) == 0


def test_unresolvable_target_fails_the_setup() -> None:
    """A target name that does not resolve fails ``initiate``."""
    protocol, wire, _gw_b = setup(Observer(), {})
    failures: list[Any] = []
    protocol.initiate(A).addErrback(failures.append)
    wire.pump()
    (failure,) = failures
    assert failure.check(IkeSaSetupFailed)
    assert "cannot resolve" in failure.value.event.reason
