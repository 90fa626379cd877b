"""NAT traversal (RFC 7296 section 2.23, RFC 3948) on in-memory endpoints through a NAT.

``Network`` carries the datagrams of a client and a gateway endpoint, each with a main port
(500) and a NAT traversal port (4500), optionally through a masquerading NAT in front of the
client (new outside port per inside address and port, forgotten on ``rebind``) or a static
NAT in front of the gateway (its public address forwarded to its private one).
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from tests.ike.test_gateway import FakeReactor
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import NON_ESP_MARKER, ExchangeType, NotifyType
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    IkeEvent,
    IkeSaEstablished,
    IkeSaMoved,
    IkeSaRekeyed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.gateway import IkeGatewayProtocol
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol
from twisted_rserpool.ike.payloads import decode_header, decode_message
from twisted_rserpool.ike.sa import IkeSa

Address = tuple[str, int]
PSK = PskTable(default=b"nat-psk")
CLIENT = "10.0.0.2"  # the client's own (private) address
NAT_PUBLIC = "198.51.100.7"  # the masquerading NAT's outside address
GATEWAY = "192.0.2.1"
GATEWAY_PRIVATE = "10.9.0.1"  # the gateway's address behind a static NAT


def config(identity: str, **kw: object) -> IkeConfig:
    return IkeConfig(Identity.parse(identity), PSK, **kw)  # type: ignore[arg-type]


@dataclass
class Masquerade:
    """A NAT that gives each inside (address, port) an outside port on ``public``."""

    public: str
    next_port: int = 40000
    outside: dict[Address, Address] = field(default_factory=dict)
    inside: dict[Address, Address] = field(default_factory=dict)

    def out(self, source: Address) -> Address:
        mapped = self.outside.get(source)
        if mapped is None:
            mapped = (self.public, self.next_port)
            self.next_port += 1
            self.outside[source] = mapped
            self.inside[mapped] = source
        return mapped

    def back(self, destination: Address) -> Address | None:
        return self.inside.get(destination)

    def rebind(self) -> None:
        """Forget every mapping (a NAT reboot or an expired mapping): new outside ports."""
        self.outside.clear()
        self.inside.clear()
        self.next_port += 100


@dataclass
class Sent:
    """One datagram as it left its sender (before any NAT) and where it was addressed."""

    sender: str
    source: Address
    destination: Address
    data: bytes


Tamper = Callable[[Sent], bytes | None]


class Network:
    """A client endpoint and a gateway endpoint, ports 500 and 4500 each, maybe NATs."""

    def __init__(
        self,
        *,
        masquerade: bool = True,
        gateway_behind_nat: bool = False,
        gw_config: IkeConfig | None = None,
        cl_config: IkeConfig | None = None,
        client_nat_t: bool = True,
    ) -> None:
        self.nat = Masquerade(NAT_PUBLIC) if masquerade else None
        self.gateway_behind_nat = gateway_behind_nat
        gw_host = GATEWAY_PRIVATE if gateway_behind_nat else GATEWAY
        self.gw = IkeEndpoint(gw_config or config("gw@test"), (gw_host, 500), nat_t_port=4500)
        self.cl = IkeEndpoint(
            cl_config or config("client@test"),
            (CLIENT, 500),
            nat_t_port=4500 if client_nat_t else None,
        )
        self.gw_events: list[IkeEvent] = []
        self.cl_events: list[IkeEvent] = []
        self.sent: list[Sent] = []

    def gateway_seen_from(self, source: Address) -> Address:
        """What the gateway's datagram from ``source`` carries as source once outside."""
        return (GATEWAY, source[1]) if self.gateway_behind_nat else source

    def deliver(self, item: Sent, data: bytes, now: float) -> None:
        if item.sender == "cl":
            source = self.nat.out(item.source) if self.nat is not None else item.source
            host, port = item.destination
            if host != GATEWAY or port not in (500, 4500):
                return
            self.gw_events += self.gw.receive_datagram(data, source, now, port)
            return
        source = self.gateway_seen_from(item.source)
        target: Address | None = item.destination
        if self.nat is not None:
            target = self.nat.back(item.destination)
        if target is None or target[0] != CLIENT:
            return  # no mapping (any more): the NAT drops it
        self.cl_events += self.cl.receive_datagram(data, source, now, target[1])

    def inject(self, data: bytes, source: Address, port: int, now: float) -> None:
        """A datagram from anywhere to the gateway's ``port``."""
        self.gw_events += self.gw.receive_datagram(data, source, now, port)

    def pump(self, now: float = 0.0, tamper: Tamper | None = None) -> None:
        self.cl_events += self.cl.events()
        self.gw_events += self.gw.events()
        for _ in range(50):
            moved = False
            for name, endpoint in (("cl", self.cl), ("gw", self.gw)):
                for data, destination, port in endpoint.datagrams_by_port():
                    moved = True
                    item = Sent(name, (endpoint.local_address[0], port), destination, data)
                    self.sent.append(item)
                    out = data if tamper is None else tamper(item)
                    if out is not None:
                        self.deliver(item, out, now)
            if not moved:
                return
        raise AssertionError("endless exchange")

    def tick(self, now: float) -> None:
        self.cl_events += self.cl.handle_timer(now)
        self.gw_events += self.gw.handle_timer(now)
        self.pump(now)

    def establish(self, now: float = 0.0) -> bytes:
        spi = self.cl.initiate((GATEWAY, 500), now)
        self.pump(now)
        return spi

    def gw_sa(self) -> IkeSa:
        (sa,) = list(self.gw)
        return sa

    def cl_sa(self) -> IkeSa:
        (sa,) = list(self.cl)
        return sa


def of(events: list[IkeEvent], kind: type[object]) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def nat_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port), written out from RFC 7296 section 2.23."""
    packed = ipaddress.ip_address(address).packed
    return hashlib.sha1(spi_i + spi_r + packed + struct.pack("!H", port)).digest()


def ike(data: bytes) -> bytes:
    """The IKE message inside a datagram (without a non-ESP marker)."""
    return data[4:] if data[:4] == NON_ESP_MARKER else data


# --- NAT detection ---------------------------------------------------------------------


def test_nat_detection_hashes_computed_and_checked() -> None:
    """IKE_SA_INIT carries NAT_DETECTION_SOURCE_IP/DESTINATION_IP as SHA-1 over the SPIs,
    address and port each side sends from and to; through a masquerading NAT the gateway
    finds the client behind a NAT and not itself, the client finds itself behind one."""
    net = Network()
    net.establish()
    request, response = (decode_message(ike(s.data)) for s in net.sent[:2])
    assert request.exchange_type == response.exchange_type == ExchangeType.IKE_SA_INIT
    spi_i, spi_r = response.spi_i, response.spi_r
    zero = bytes(8)
    source = request.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    destination = request.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    assert source is not None and source.data == nat_hash(spi_i, zero, CLIENT, 500)
    assert destination is not None and destination.data == nat_hash(spi_i, zero, GATEWAY, 500)
    source = response.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    destination = response.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    assert source is not None and source.data == nat_hash(spi_i, spi_r, GATEWAY, 500)
    # The gateway hashes the address the request came from: the NAT's.
    assert destination is not None
    assert destination.data == nat_hash(spi_i, spi_r, NAT_PUBLIC, 40000)
    (gw_up,) = of(net.gw_events, IkeSaEstablished)
    (cl_up,) = of(net.cl_events, IkeSaEstablished)
    assert isinstance(gw_up, IkeSaEstablished) and isinstance(cl_up, IkeSaEstablished)
    assert (gw_up.peer_behind_nat, gw_up.local_behind_nat) == (True, False)
    assert (cl_up.peer_behind_nat, cl_up.local_behind_nat) == (False, True)


def test_gateway_behind_nat_knows_it() -> None:
    """A gateway behind a static NAT (clients reach its public address) finds itself behind
    a NAT from the client's NAT_DETECTION_DESTINATION_IP."""
    net = Network(masquerade=False, gateway_behind_nat=True)
    net.establish()
    (gw_up,) = of(net.gw_events, IkeSaEstablished)
    (cl_up,) = of(net.cl_events, IkeSaEstablished)
    assert isinstance(gw_up, IkeSaEstablished) and isinstance(cl_up, IkeSaEstablished)
    assert (gw_up.peer_behind_nat, gw_up.local_behind_nat) == (False, True)
    assert (cl_up.peer_behind_nat, cl_up.local_behind_nat) == (True, False)


def test_no_nat_no_float() -> None:
    """Without a NAT both sides see matching hashes and everything stays on port 500,
    without the non-ESP marker."""
    net = Network(masquerade=False)
    net.establish()
    (gw_up,) = of(net.gw_events, IkeSaEstablished)
    assert isinstance(gw_up, IkeSaEstablished)
    assert not (gw_up.peer_behind_nat or gw_up.local_behind_nat)
    assert {(s.source[1], s.destination[1]) for s in net.sent} == {(500, 500)}
    assert not any(s.data.startswith(NON_ESP_MARKER) for s in net.sent)
    assert not of(net.gw_events + net.cl_events, IkeSaMoved)
    assert net.gw_sa().local_address == (GATEWAY, 500)


# --- the float -------------------------------------------------------------------------


def test_client_behind_nat_floats_to_4500() -> None:
    """Behind a NAT our initiator moves to port 4500 right after IKE_SA_INIT: IKE_AUTH and
    everything after go from its 4500 to the gateway's 4500 with the non-ESP marker; the
    gateway follows the first authenticated request there (the NAT maps the new port to a
    new outside port) and answers to it; the CHILD_SA is negotiated."""
    net = Network()
    net.establish()
    init_request, init_response, *rest = net.sent
    assert (init_request.source, init_request.destination) == ((CLIENT, 500), (GATEWAY, 500))
    assert init_response.source == (GATEWAY, 500)
    assert rest and all(s.data.startswith(NON_ESP_MARKER) for s in rest)
    assert all(s.source[1] == 4500 for s in rest)
    assert all(s.destination == (GATEWAY, 4500) for s in rest if s.sender == "cl")
    assert all(s.destination == (NAT_PUBLIC, 40001) for s in rest if s.sender == "gw")
    assert of(net.gw_events, ChildSaEstablished) and of(net.cl_events, ChildSaEstablished)
    gw_sa, cl_sa = net.gw_sa(), net.cl_sa()
    assert gw_sa.peer_address == (NAT_PUBLIC, 40001) and gw_sa.local_address == (GATEWAY, 4500)
    assert cl_sa.peer_address == (GATEWAY, 4500) and cl_sa.local_address == (CLIENT, 4500)
    (gw_moved,) = of(net.gw_events, IkeSaMoved)
    (cl_moved,) = of(net.cl_events, IkeSaMoved)
    assert isinstance(gw_moved, IkeSaMoved) and isinstance(cl_moved, IkeSaMoved)
    assert gw_moved.old_address == (NAT_PUBLIC, 40000) and "floated" in gw_moved.reason
    assert cl_moved.peer_address == (GATEWAY, 4500) and "NAT detected" in cl_moved.reason
    # Later exchanges started by the gateway use the new path too.
    net.gw.check_liveness(gw_sa.local_spi, 1.0)
    net.pump(1.0)
    assert net.sent[-2].sender == "gw" and net.sent[-2].destination == (NAT_PUBLIC, 40001)
    assert of(net.gw_events, LivenessConfirmed)


def test_initiator_without_nat_t_socket_on_other_port() -> None:
    """An initiator with no NAT-T socket, bound to a port other than 500, floats by sending
    to the gateway's 4500 from that port, with the marker."""
    net = Network(client_nat_t=False)
    net.cl.local_address = (CLIENT, 1500)
    net.establish()
    assert of(net.cl_events, IkeSaEstablished)
    assert net.cl_sa().peer_address == (GATEWAY, 4500)
    assert all(s.source == (CLIENT, 1500) for s in net.sent if s.sender == "cl")


def test_initiator_stays_without_any_way_to_float() -> None:
    """An initiator on port 500 with no NAT-T socket cannot float (UDP encapsulation must
    not be done on port 500): it stays and still establishes."""
    net = Network(client_nat_t=False)
    net.establish()
    assert of(net.cl_events, IkeSaEstablished)
    assert {s.destination for s in net.sent if s.sender == "cl"} == {(GATEWAY, 500)}
    assert {s.source[1] for s in net.sent} == {500}
    assert not of(net.cl_events, IkeSaMoved)


def test_client_starting_on_4500() -> None:
    """A client may use port 4500 from the start (as strongSwan does towards a non-500
    gateway port): IKE_SA_INIT on the gateway's 4500 is answered from 4500 with the marker
    and the SA lives there; NAT detection uses that port."""
    net = Network(masquerade=False)
    net.cl.local_address = (CLIENT, 4500)
    net.cl.initiate((GATEWAY, 4500), 0.0)
    net.pump()
    assert of(net.gw_events, IkeSaEstablished)
    assert all(s.data.startswith(NON_ESP_MARKER) for s in net.sent)
    assert net.sent[1].source == (GATEWAY, 4500)
    assert net.gw_sa().local_address == (GATEWAY, 4500)
    assert not of(net.gw_events, IkeSaMoved)


def test_forced_encapsulation_float_without_nat() -> None:
    """strongSwan with encap = yes sends a false NAT_DETECTION_SOURCE_IP (here: hashes made
    for another address), so the gateway sees the client "behind a NAT" although there is
    none; the client moves to 4500 and the gateway follows it there."""
    net = Network(masquerade=False)
    net.cl.local_address = ("203.0.113.99", 500)  # what the false hashes are made of
    net.cl.initiate((GATEWAY, 500), 0.0)
    net.cl.local_address = (CLIENT, 500)
    net.pump()
    assert of(net.gw_events, IkeSaEstablished) and of(net.gw_events, ChildSaEstablished)
    gw_sa = net.gw_sa()
    assert gw_sa.peer_behind_nat and not gw_sa.local_behind_nat
    assert gw_sa.peer_address == (CLIENT, 4500) and gw_sa.local_address == (GATEWAY, 4500)
    assert all(s.source[1] == 4500 for s in net.sent[2:])


# --- rebinding -------------------------------------------------------------------------


def test_rebinding_followed_on_authenticated_new_request() -> None:
    """After the NAT forgets its mapping, the client's next request arrives from a new port;
    it is authenticated and new, so the gateway follows it, answers there and sends its own
    requests there afterwards."""
    net = Network()
    spi = net.establish()
    gw_sa = net.gw_sa()
    before = gw_sa.peer_address
    net.nat.rebind()  # type: ignore[union-attr]
    net.cl.check_liveness(spi, 5.0)
    net.pump(5.0)
    assert of(net.cl_events, LivenessConfirmed)
    assert gw_sa.peer_address != before and gw_sa.peer_address[0] == NAT_PUBLIC
    moved = [e for e in of(net.gw_events, IkeSaMoved) if "rebinding" in e.reason]  # type: ignore[attr-defined]
    assert len(moved) == 1
    net.gw.check_liveness(gw_sa.local_spi, 6.0)
    net.pump(6.0)
    assert net.sent[-2].destination == gw_sa.peer_address
    assert len(of(net.gw_events, LivenessConfirmed)) == 1


def test_rekeyed_sa_keeps_the_path() -> None:
    """An IKE SA rekeyed after the float lives on the same NAT-T path."""
    net = Network()
    spi = net.establish()
    assert net.cl.rekey_ike_sa(spi, 2.0)
    net.pump(2.0)
    assert of(net.cl_events, IkeSaRekeyed)
    new = [sa for sa in net.gw if sa.established]
    assert new and all(sa.local_address == (GATEWAY, 4500) for sa in new)
    assert all(sa.peer_address == (NAT_PUBLIC, 40001) for sa in new)


def test_spoofed_packets_from_new_address_change_nothing() -> None:
    """From an address that is not the SA's: a forged (tampered) new request, a replay of
    an older request and an unprotected message are dropped without moving the SA or
    sending anything; a replay of the last request is answered where it came from (with the
    cached response; responses go where their request came from) but moves nothing."""
    net = Network()
    spi = net.establish()
    gw_sa = net.gw_sa()
    path = (gw_sa.peer_address, gw_sa.local_address)
    old_request = next(s.data for s in net.sent if s.sender == "cl" and s.source[1] == 4500)
    net.cl.check_liveness(spi, 1.0)
    net.pump(1.0)
    last_request = net.sent[-2].data
    attacker = ("203.0.113.66", 31337)

    net.cl.check_liveness(spi, 2.0)
    ((fresh, _, _),) = net.cl.datagrams_by_port()
    forged = fresh[:-1] + bytes([fresh[-1] ^ 0x80])
    net.inject(forged, attacker, 4500, 2.0)
    net.inject(old_request, attacker, 4500, 2.0)
    header = ike(fresh)[:28]
    unprotected = NON_ESP_MARKER + header[:16] + bytes([0, 0x20, 0x25, 0x08]) + header[20:24]
    net.inject(unprotected + struct.pack("!I", 28), attacker, 4500, 2.0)
    assert net.gw.datagrams_by_port() == []
    assert (gw_sa.peer_address, gw_sa.local_address) == path
    net.inject(last_request, attacker, 4500, 2.0)
    ((answer, destination, port),) = net.gw.datagrams_by_port()
    assert destination == attacker and port == 4500
    assert decode_header(ike(answer)).response
    assert (gw_sa.peer_address, gw_sa.local_address) == path
    assert not [e for e in of(net.gw_events, IkeSaMoved) if "rebinding" in e.reason]  # type: ignore[attr-defined]
    # The genuine request still works, from the old path.
    net.inject(fresh, path[0], 4500, 2.0)
    net.pump(2.0)
    assert len(of(net.cl_events, LivenessConfirmed)) == 2


def test_gateway_behind_nat_does_not_follow_rebinding() -> None:
    """A gateway that is itself behind a NAT answers a request from a new address there but
    keeps the SA's address (RFC 7296 2.23: a host behind a NAT SHOULD NOT update)."""
    net = Network(masquerade=True, gateway_behind_nat=True)
    spi = net.establish()
    gw_sa = net.gw_sa()
    assert gw_sa.local_behind_nat and gw_sa.local_address[1] == 4500
    before = gw_sa.peer_address
    net.nat.rebind()  # type: ignore[union-attr]
    net.cl.check_liveness(spi, 1.0)
    net.pump(1.0)
    assert of(net.cl_events, LivenessConfirmed)  # answered at the new port
    assert gw_sa.peer_address == before


# --- framing on port 4500 and keepalives ------------------------------------------------


def test_esp_and_keepalives_on_4500() -> None:
    """On port 4500 a datagram without the non-ESP marker is ESP (counted, dropped, no
    answer, no state) and a single 0xFF octet is a NAT-keepalive (ignored)."""
    net = Network()
    net.establish()
    counters = dict(net.gw.counters)
    events = len(net.gw_events)
    esp = b"\x12\x34\x56\x78" + bytes(4) + b"\xaa" * 40
    net.inject(esp, (NAT_PUBLIC, 40001), 4500, 1.0)
    net.inject(b"\xff", (NAT_PUBLIC, 40001), 4500, 1.0)
    net.inject(b"\xff", ("203.0.113.5", 4500), 4500, 1.0)
    assert net.gw.datagrams_by_port() == [] and len(net.gw_events) == events
    assert net.gw.counters["esp_dropped"] == counters["esp_dropped"] + 1
    assert net.gw.counters["nat_keepalives"] == counters["nat_keepalives"] + 2
    assert len(net.gw) == 1
    # On port 500 there is no marker: a 0xFF octet is just a malformed IKE message.
    net.inject(b"\xff", (NAT_PUBLIC, 40000), 500, 1.0)
    assert net.gw.counters["nat_keepalives"] == counters["nat_keepalives"] + 2


def test_keepalives_only_when_behind_nat() -> None:
    """We send a NAT-keepalive (one 0xFF octet, no marker) from 4500 every
    nat_keepalive_interval while we are behind a NAT; a peer not behind one sends none."""
    net = Network(cl_config=config("client@test", nat_keepalive_interval=20.0))
    net.establish()
    count = len(net.sent)
    for now in (10.0, 20.0, 30.0, 40.0):
        net.tick(now)
    keepalives = [s for s in net.sent[count:] if s.data == b"\xff"]
    assert [(s.sender, s.source, s.destination) for s in keepalives] == [
        ("cl", (CLIENT, 4500), (GATEWAY, 4500)),
        ("cl", (CLIENT, 4500), (GATEWAY, 4500)),
    ]
    assert net.gw.counters["nat_keepalives"] == 2
    assert net.gw_sa().keepalive_due is None


def test_keepalives_disabled() -> None:
    """With nat_keepalive_interval None no keepalive goes out."""
    net = Network(cl_config=config("client@test", nat_keepalive_interval=None))
    net.establish()
    net.tick(100.0)
    assert not [s for s in net.sent if s.data == b"\xff"]


# --- the Twisted adapters: two sockets per side ------------------------------------------


class Wire:
    """A fake UDP transport that records what its protocol writes."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Address]] = []

    def write(self, data: bytes, addr: Address) -> None:
        self.written.append((data, addr))


def test_adapters_float_through_nat_t_sockets() -> None:
    """Through the Twisted adapters: our IkeInitiatorProtocol behind a NAT writes IKE_SA_INIT
    on its main socket, then IKE_AUTH on its NAT traversal socket (listenNatTraversal) to the
    gateway's; the gateway's IkeNatTraversalProtocol hands it to the same endpoint and the
    answer goes out of the gateway's 4500 socket; ``initiate`` fires."""
    clock = Clock()
    reactor = FakeReactor()
    gw = IkeGatewayProtocol(IkeEndpoint(config("gw@test"), (GATEWAY, 500)), clock)
    cl = IkeInitiatorProtocol(IkeEndpoint(config("client@test"), (CLIENT, 500)), clock)
    wires: dict[tuple[str, int], Wire] = {}
    protocols: dict[tuple[str, int], DatagramProtocol] = {}
    for host, protocol in ((GATEWAY, gw), (CLIENT, cl)):
        protocol.makeConnection(wire := Wire())  # type: ignore[arg-type]
        wires[(host, 500)], protocols[(host, 500)] = wire, protocol
        protocol.listenNatTraversal(reactor, 4500, host)  # type: ignore[arg-type]
        nat_t = protocol.natTraversal
        assert nat_t is not None and protocol.endpoint.nat_t_port == 4500
        nat_t.makeConnection(wire := Wire())  # type: ignore[arg-type]
        wires[(host, 4500)], protocols[(host, 4500)] = wire, nat_t
    nat = Masquerade(NAT_PUBLIC)
    done: list[object] = []
    cl.initiate((GATEWAY, 500)).addBoth(done.append)
    log: list[tuple[Address, Address]] = []
    for _ in range(20):
        for (host, port), wire in wires.items():
            for data, destination in wire.written:
                log.append(((host, port), destination))
                if host == CLIENT:
                    protocols[destination].datagramReceived(data, nat.out((host, port)))
                else:
                    inside = nat.back(destination)
                    assert inside is not None
                    protocols[inside].datagramReceived(data, (host, port))
            wire.written.clear()
    (up,) = done
    assert isinstance(up, IkeSaEstablished) and up.local_behind_nat
    assert log[:2] == [((CLIENT, 500), (GATEWAY, 500)), ((GATEWAY, 500), (NAT_PUBLIC, 40000))]
    assert log[2:4] == [((CLIENT, 4500), (GATEWAY, 4500)), ((GATEWAY, 4500), (NAT_PUBLIC, 40001))]


# --- fuzzing the port-4500 receive path -------------------------------------------------

_ESTABLISHED = Network()
_ESTABLISHED.establish()
_SA = _ESTABLISHED.gw_sa()
_PATH = (_SA.peer_address, _SA.local_address)
_GENUINE = [s.data for s in _ESTABLISHED.sent if s.sender == "cl" and s.source[1] == 4500]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: NON_ESP_MARKER + b),
        st.tuples(st.sampled_from(_GENUINE), st.integers(0, 10_000), st.integers(0, 255)).map(
            lambda t: t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1 :]
        ),
    ),
    st.sampled_from([("203.0.113.9", 4500), ("203.0.113.9", 1), (NAT_PUBLIC, 40001)]),
)
def test_fuzz_4500_receive_path(data: bytes, source: Address) -> None:
    """Any datagram on port 4500 (raw, after a marker, or a genuine message with one octet
    changed) never raises, never moves the established SA, and whatever goes back carries
    the marker or is a cached response to a byte-identical retransmission."""
    net = _ESTABLISHED
    net.inject(data, source, 4500, 1.0)
    sa = net.gw.get(_SA.local_spi)
    assert sa is not None and (sa.peer_address, sa.local_address) == _PATH
    for out, _destination, port in net.gw.datagrams_by_port():
        assert port == 4500 and out.startswith(NON_ESP_MARKER)
