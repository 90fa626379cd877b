"""The Twisted adapters (gateway and initiator) on an injected Clock with fake UDP transports."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    LivenessConfirmed,
)
from twisted_rserpool.ike.gateway import IkeGatewayProtocol, IkeNatTraversalProtocol, IkeUdpService
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol, IkeSaSetupFailed

GW = ("127.0.0.2", 500)
CL = ("127.0.0.1", 1500)
PSK = PskTable(default=b"k")


class FakeUdp:
    """Records what a protocol writes."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


class RecordingGateway(IkeGatewayProtocol):
    def __init__(self, endpoint: IkeEndpoint, clock: Clock) -> None:
        super().__init__(endpoint, clock)
        self.seen: list[IkeEvent] = []

    def ikeEventReceived(self, event: IkeEvent) -> None:
        super().ikeEventReceived(event)
        self.seen.append(event)


def setup() -> tuple[Clock, RecordingGateway, IkeInitiatorProtocol, FakeUdp, FakeUdp]:
    clock = Clock()
    gw = RecordingGateway(IkeEndpoint(IkeConfig(Identity.parse("gw@t"), PSK), GW), clock)
    cl = IkeInitiatorProtocol(IkeEndpoint(IkeConfig(Identity.parse("c@t"), PSK), CL), clock)
    gw_udp, cl_udp = FakeUdp(), FakeUdp()
    gw.makeConnection(gw_udp)  # type: ignore[arg-type]
    cl.makeConnection(cl_udp)  # type: ignore[arg-type]
    return clock, gw, cl, gw_udp, cl_udp


def pump(gw: IkeGatewayProtocol, cl: IkeInitiatorProtocol, gw_udp: FakeUdp, cl_udp: FakeUdp) -> int:
    count = 0
    while gw_udp.written or cl_udp.written:
        for data, addr in cl_udp.written[:]:
            cl_udp.written.remove((data, addr))
            assert addr == GW
            gw.datagramReceived(data, CL)
            count += 1
        for data, addr in gw_udp.written[:]:
            gw_udp.written.remove((data, addr))
            assert addr == CL
            cl.datagramReceived(data, GW)
            count += 1
    return count


def result(d: Deferred[object]) -> object:
    box: list[object] = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    return box[0]


def test_handshake_liveness_delete() -> None:
    """Through the adapters: initiate fires with the established event, a liveness check
    and a delete fire too, and the gateway reports the same SA."""
    clock, gw, cl, gw_udp, cl_udp = setup()
    d = cl.initiate(GW)
    assert pump(gw, cl, gw_udp, cl_udp) == 4
    up = result(d)  # type: ignore[arg-type]
    assert isinstance(up, IkeSaEstablished) and str(up.peer_id) == "gw@t"
    assert any(isinstance(e, IkeSaEstablished) for e in gw.seen)
    clock.advance(3)
    alive = cl.checkLiveness(up.spi_i)
    pump(gw, cl, gw_udp, cl_udp)
    assert isinstance(result(alive), LivenessConfirmed)  # type: ignore[arg-type]
    gone = cl.deleteIkeSa(up.spi_i)
    pump(gw, cl, gw_udp, cl_udp)
    deleted = result(gone)  # type: ignore[arg-type]
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "deleted"
    assert [e.reason for e in gw.seen if isinstance(e, IkeSaDeleted)] == ["deleted by peer"]
    assert clock.getDelayedCalls() == []


def test_retransmission_on_the_clock() -> None:
    """Unanswered, the initiator retransmits on the injected clock and finally fails the
    Deferred with IkeSaSetupFailed; no timer is left behind."""
    clock, _gw, cl, _gw_udp, cl_udp = setup()
    d = cl.initiate(GW)
    assert len(cl_udp.written) == 1
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == 2.0
    for count, step in enumerate((2, 4, 8, 16), start=2):
        clock.advance(step)
        assert len(cl_udp.written) == count
    assert {data for data, _ in cl_udp.written} == {cl_udp.written[0][0]}
    clock.advance(32)
    failure = result(d)  # type: ignore[arg-type]
    assert isinstance(failure, Failure) and isinstance(failure.value, IkeSaSetupFailed)
    assert clock.getDelayedCalls() == []


def test_half_open_timer_on_gateway() -> None:
    """The gateway's half-open timeout runs on its clock."""
    clock, gw, cl, _gw_udp, cl_udp = setup()
    cl.initiate(GW)
    gw.datagramReceived(cl_udp.written.pop()[0], CL)
    assert gw.endpoint.half_open == 1
    assert gw.endpoint.next_deadline() == 30.0
    # Both protocols' timers share the clock's one call, due at the earlier (the client's).
    assert [c.getTime() for c in clock.getDelayedCalls() if c.active()] == [2.0]
    cl.stopProtocol()
    clock.advance(30)
    assert gw.endpoint.half_open == 0 and len(gw.endpoint) == 0
    gw.stopProtocol()
    assert clock.getDelayedCalls() == []


class FakePort:
    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = False

    def getHost(self) -> object:
        class Address:
            port = self.port

        return Address()

    def stopListening(self) -> None:
        self.stopped = True


class FakeReactor(Clock):
    """A clock that records UDP listens: IKE ports in ``listened``, NAT traversal ports
    (``IkeNatTraversalProtocol``) in ``nat_listened``."""

    def __init__(self) -> None:
        super().__init__()
        self.listened: list[tuple[int, object, str, int]] = []
        self.nat_listened: list[tuple[int, object, str, int]] = []
        self.ports: list[FakePort] = []

    def listenUDP(
        self, port: int, protocol: object, interface: str, maxPacketSize: int
    ) -> FakePort:
        nat = isinstance(protocol, IkeNatTraversalProtocol)
        (self.nat_listened if nat else self.listened).append(
            (port, protocol, interface, maxPacketSize)
        )
        self.ports.append(FakePort(port or (41000 if nat else 40000)))
        return self.ports[-1]


def test_udp_service_binds_and_learns_port() -> None:
    """IkeUdpService listens on start (learning a system-chosen port), rotates the cookie
    secret on the clock, and stops everything on stop."""
    reactor = FakeReactor()
    gw = IkeGatewayProtocol(
        IkeEndpoint(IkeConfig(Identity.parse("gw@t"), PSK), ("127.0.0.2", 0)), reactor
    )
    service = IkeUdpService(gw, "127.0.0.2", 0, reactor)
    service.startService()
    assert reactor.listened == [(0, gw, "127.0.0.2", 65535)]
    assert gw.endpoint.local_address == ("127.0.0.2", 40000)
    before = gw.endpoint._cookie_version
    reactor.advance(300)
    assert gw.endpoint._cookie_version == before + 1
    service.stopService()
    assert reactor.ports[0].stopped
    assert reactor.getDelayedCalls() == []
