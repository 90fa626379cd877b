"""RFC 5685 redirects between in-memory IKE endpoints (no sockets, injected time)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from tests.ike.test_sa import forge
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    ClientRedirected,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRedirected,
)
from twisted_rserpool.ike.payloads import (
    IkeMessage,
    NoncePayload,
    NotifyPayload,
    RedirectData,
    decode_message,
    parse_redirect,
    redirect_notify,
)
from twisted_rserpool.ike.redirect import (
    RedirectPolicy,
    RedirectRequest,
    StaticGateways,
    parse_gateway,
)
from twisted_rserpool.ike.sa import State
from twisted_rserpool.ike.tasks.redirect import RedirectClient

CL = ("127.0.0.1", 1500)
A = ("127.0.0.2", 500)
B = ("127.0.0.3", 500)
C = ("127.0.0.4", 500)
PSK = PskTable(default=b"redirect-psk")


def config(identity: str, **kw: object) -> IkeConfig:
    return IkeConfig(Identity.parse(identity), PSK, **kw)  # type: ignore[arg-type]


Filter = Callable[[tuple[str, int], tuple[str, int], bytes], bytes | None]


class Net:
    """A client and gateways on loopback addresses; datagrams go by destination address."""

    def __init__(self, cl_config: IkeConfig | None = None) -> None:
        self.nodes: dict[tuple[str, int], IkeEndpoint] = {}
        self.events: dict[tuple[str, int], list[IkeEvent]] = {}
        self.log: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []
        self.client = self.add(CL, cl_config or config("client@test"))

    def add(
        self,
        address: tuple[str, int],
        cfg: IkeConfig | None = None,
        policy: RedirectPolicy | None = None,
    ) -> IkeEndpoint:
        endpoint = IkeEndpoint(cfg or config("gw@test"), address, redirect_policy=policy)
        self.nodes[address] = endpoint
        self.events[address] = []
        return endpoint

    def pump(self, now: float = 0.0, tamper: Filter | None = None) -> None:
        """Deliver datagrams until none are left; ``tamper`` may drop or alter them."""
        for address, node in self.nodes.items():
            self.events[address] += node.events()
        for _ in range(100):
            moved = False
            for src, node in list(self.nodes.items()):
                for data, dst in node.datagrams_to_send():
                    moved = True
                    self.log.append((src, dst, data))
                    out = data if tamper is None else tamper(src, dst, data)
                    target = self.nodes.get(dst)
                    if out is not None and target is not None:
                        self.events[dst] += target.receive_datagram(out, src, now)
            if not moved:
                return
        raise AssertionError("endless exchange")

    def tick(self, now: float) -> None:
        for address, node in self.nodes.items():
            self.events[address] += node.handle_timer(now)
        self.pump(now)

    def of(self, address: tuple[str, int], kind: type[object]) -> list[object]:
        return [e for e in self.events[address] if isinstance(e, kind)]

    def messages(self, src: tuple[str, int], dst: tuple[str, int]) -> list[IkeMessage]:
        return [decode_message(d) for s, t, d in self.log if s == src and t == dst]


def static(*gateways: str, **kw: object) -> RedirectPolicy:
    return RedirectPolicy(StaticGateways([parse_gateway(g) for g in gateways]), **kw)  # type: ignore[arg-type]


def established(net: Net, address: tuple[str, int]) -> list[IkeSaEstablished]:
    return [e for e in net.events[address] if isinstance(e, IkeSaEstablished)]


# --- IKE_SA_INIT ------------------------------------------------------------------------------


def test_init_redirect_to_second_gateway() -> None:
    """A redirecting gateway answers N(REDIRECT, B, Ni) alone with SPIr zero and keeps no
    state; the client follows with a new IKE_SA_INIT carrying N(REDIRECTED_FROM, A), and B
    counts the client and serves it."""
    net = Net()
    gw_a = net.add(A, policy=static("127.0.0.3", always=True))
    gw_b = net.add(B)
    spi = net.client.initiate(A, 0.0)
    net.pump()
    (request,) = net.messages(CL, A)
    assert request.notify(NotifyType.REDIRECT_SUPPORTED) is not None
    (answer,) = net.messages(A, CL)
    assert answer.spi_r == bytes(8) and answer.exchange_type == ExchangeType.IKE_SA_INIT
    assert [p.notify_type for p in answer.payloads if isinstance(p, NotifyPayload)] == [
        NotifyType.REDIRECT
    ]
    assert len(answer.payloads) == 1
    nonce = request.find(NoncePayload)
    assert nonce is not None
    redirect = answer.notify(NotifyType.REDIRECT)
    assert redirect is not None
    assert parse_redirect(redirect) == RedirectData(IPv4Address("127.0.0.3"), nonce.data)
    assert len(gw_a) == 0 and gw_a.redirects == {"static": 1}
    (sent,) = net.of(A, ClientRedirected)
    assert isinstance(sent, ClientRedirected) and sent.exchange == "IKE_SA_INIT"
    (moved,) = net.of(CL, IkeSaRedirected)
    assert isinstance(moved, IkeSaRedirected)
    assert moved.spi_i == spi and moved.new_gateway == IPv4Address("127.0.0.3")
    assert moved.peer_id is None and moved.exchange == "IKE_SA_INIT"
    (second,) = net.messages(CL, B)[:1]
    from_a = second.notify(NotifyType.REDIRECTED_FROM)
    assert from_a is not None and from_a.data == b"\x01\x04" + IPv4Address("127.0.0.2").packed
    assert second.notify(NotifyType.REDIRECT_SUPPORTED) is None
    (up,) = established(net, CL)
    assert up.peer_address == B and up.spi_i == moved.new_spi_i
    assert gw_b.counters["redirected_from"] == 1 and gw_b.redirected_from == {"127.0.0.2": 1}
    assert not net.of(CL, IkeSaFailed)


def test_no_redirect_without_support_signal() -> None:
    """MUST NOT: a client that sent neither REDIRECT_SUPPORTED nor REDIRECTED_FROM is never
    redirected, even by a pure redirector; it is served."""
    net = Net(config("client@test", follow_redirects=False))
    gw_a = net.add(A, policy=static("127.0.0.3", always=True))
    net.client.initiate(A, 0.0)
    net.pump()
    (request,) = net.messages(CL, A)[:1]
    assert request.notify(NotifyType.REDIRECT_SUPPORTED) is None
    assert all(m.notify(NotifyType.REDIRECT) is None for m in net.messages(A, CL))
    assert established(net, CL) and gw_a.redirects == {}


def test_spoofed_redirect_is_ignored() -> None:
    """A REDIRECT whose Nonce Data is not our Ni is discarded; the client keeps waiting and
    completes with the real answer."""
    net = Net()
    net.add(A)
    net.client.initiate(A, 0.0)
    for data, dst in net.client.datagrams_to_send():
        message = decode_message(data)
        forged = IkeMessage(
            message.spi_i,
            bytes(8),
            ExchangeType.IKE_SA_INIT,
            0,
            (redirect_notify(IPv4Address("127.0.0.66"), b"\x00" * 32),),
            initiator=False,
            response=True,
        )
        net.events[CL] += net.client.receive_datagram(forged.encode(), dst, 0.0)
        net.events[A] += net.nodes[A].receive_datagram(data, CL, 0.0)
    net.pump()
    assert not net.of(CL, IkeSaRedirected) and not net.of(CL, IkeSaFailed)
    assert established(net, CL)[0].peer_address == A


def test_redirect_not_followed_when_not_offered() -> None:
    """A client that did not offer to be redirected ignores a REDIRECT with its own Ni."""
    net = Net(config("client@test", follow_redirects=False))
    net.client.initiate(A, 0.0)
    ((data, _),) = net.client.datagrams_to_send()
    request = decode_message(data)
    nonce = request.find(NoncePayload)
    assert nonce is not None
    forged = IkeMessage(
        request.spi_i,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        (redirect_notify(IPv4Address("127.0.0.3"), nonce.data),),
        initiator=False,
        response=True,
    )
    events = net.client.receive_datagram(forged.encode(), A, 0.0)
    assert events == [] and len(net.client) == 1


def test_target_allow_list() -> None:
    """A redirect to a gateway outside the client's allow-list fails the setup."""
    net = Net(config("client@test", redirect_targets=frozenset({"127.0.0.4"})))
    net.add(A, policy=static("127.0.0.3", always=True))
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    (failed,) = net.of(CL, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and failed.notify_type == NotifyType.REDIRECT
    assert not net.messages(CL, B) and len(net.client) == 0


@pytest.mark.parametrize("limit", [5, 2])
def test_loop_limit(limit: int) -> None:
    """Two gateways redirecting to each other: the client follows ``max_redirects``
    redirects within the window and then gives up."""
    net = Net(config("client@test", max_redirects=limit))
    net.add(A, policy=static("127.0.0.3", always=True))
    net.add(B, policy=static("127.0.0.2", always=True))
    net.client.initiate(A, 0.0)
    net.pump()
    assert len(net.of(CL, IkeSaRedirected)) == limit
    (failed,) = net.of(CL, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and "redirect" in failed.reason
    assert len(net.client) == 0


def test_loop_limit_window() -> None:
    """Redirects older than the window do not count towards the limit."""
    net = Net(config("client@test", max_redirects=1, redirect_window=10.0))
    gw_a = net.add(A, policy=static("127.0.0.3", always=True))
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump(0.0)
    assert established(net, CL)
    (sa,) = [s for s in net.client if s.state == State.ESTABLISHED]
    assert sa.redirect_times == (0.0,)
    gw_b = net.nodes[B]
    gw_b.redirect_policy = static("127.0.0.2", always=True)
    gw_a.redirect_policy = None
    (gw_sa,) = list(gw_b)
    assert gw_b.redirect(gw_sa.local_spi, IPv4Address("127.0.0.2"), 20.0)
    net.pump(20.0)
    assert len(established(net, CL)) == 2 and established(net, CL)[1].peer_address == A


def test_cookie_checked_before_redirect() -> None:
    """With cookies demanded, the gateway first asks for a cookie and redirects only the
    request that returns it."""
    net = Net()
    gw_a = net.add(A, config("gw@test", cookie_threshold=0), static("127.0.0.3", always=True))
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    answers = net.messages(A, CL)
    assert answers[0].notify(NotifyType.COOKIE) is not None
    assert answers[1].notify(NotifyType.REDIRECT) is not None
    assert gw_a.counters["cookies_sent"] == 1 and gw_a.redirects == {"static": 1}
    assert established(net, CL)[0].peer_address == B


def test_load_threshold() -> None:
    """New clients are redirected once the gateway holds ``max_ike_sas`` IKE SAs; it never
    redirects to itself."""
    net = Net()
    gw_a = net.add(A, policy=static("127.0.0.2", "127.0.0.3", max_ike_sas=1))
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    net.client.initiate(A, 1.0)
    net.pump(1.0)
    ups = established(net, CL)
    assert [u.peer_address for u in ups] == [A, B]
    assert gw_a.redirects == {"load": 1}


def test_load_function_and_sa_limit() -> None:
    """A load above ``max_load`` redirects; a gateway at its SA limit still redirects
    clients that support it instead of dropping them."""
    load = [0.9]
    net = Net()
    gw_a = net.add(
        A, config("gw@test", max_ike_sas=0), static("127.0.0.3", max_load=0.8, load=lambda: load[0])
    )
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    assert established(net, CL)[0].peer_address == B and gw_a.redirects == {"load": 1}


def test_drain_moves_established_clients() -> None:
    """Draining redirects new clients, and ``redirect_all`` moves established ones with a
    protected INFORMATIONAL N(REDIRECT) without Nonce Data; the client builds the new SA
    before it deletes the old one."""
    net = Net()
    policy = static("127.0.0.4")
    gw_b = net.add(B, policy=policy)
    net.add(C)
    first = net.client.initiate(B, 0.0)
    net.pump()
    assert established(net, CL)[0].peer_address == B
    policy.draining = True
    assert gw_b.redirect_all(None, 5.0, "drain") == 1
    net.pump(5.0)
    redirected = [e for e in net.events[CL] if isinstance(e, IkeSaRedirected)]
    assert len(redirected) == 1 and redirected[0].exchange == "INFORMATIONAL"
    assert redirected[0].spi_i == first and str(redirected[0].peer_id) == "gw@test"
    order = [type(e).__name__ for e in net.events[CL] if not isinstance(e, ChildSaEstablished)]
    assert order.index("IkeSaEstablished", 1) < order.index("IkeSaDeleted")
    ups = established(net, CL)
    assert [u.peer_address for u in ups] == [B, C]
    (gone,) = net.of(CL, IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.spi_i == first
    assert len(gw_b) == 0 and gw_b.redirects == {"drain": 1}
    informational = [
        m for m in net.messages(B, CL) if m.exchange_type == ExchangeType.INFORMATIONAL
    ]
    assert informational and all(m.encrypted is not None for m in informational)
    # A new client is sent on as well.
    net.client.initiate(B, 6.0)
    net.pump(6.0)
    assert established(net, CL)[-1].peer_address == C and gw_b.redirects["drain"] == 2


def test_informational_redirect_has_no_nonce() -> None:
    """MUST NOT: the gateway-initiated REDIRECT carries no Nonce Data; a client ignores one
    that does (it answers, stays, and starts nothing)."""
    net = Net()
    gw_b = net.add(B)
    net.add(C)
    net.client.initiate(B, 0.0)
    net.pump()
    (gw_sa,) = list(gw_b)
    assert gw_b.redirect(gw_sa.local_spi, IPv4Address("127.0.0.4"), 1.0)
    (task,) = list(gw_sa.window)
    assert isinstance(task, RedirectClient)
    (sent,) = task.build(1.0)
    assert isinstance(sent, NotifyPayload) and parse_redirect(sent).nonce == b""
    # Now a REDIRECT with nonce data, sent over the protected SA, is ignored.
    net.pump(1.0)
    net2 = Net()
    gw = net2.add(B)
    net2.client.initiate(B, 0.0)
    net2.pump()
    (sa,) = list(gw)
    forge(
        sa,
        ExchangeType.INFORMATIONAL,
        (redirect_notify(IPv4Address("127.0.0.4"), b"n" * 16),),
        1.0,
    )
    net2.pump(1.0)
    assert not net2.of(CL, IkeSaRedirected) and len(established(net2, CL)) == 1
    assert not net2.messages(CL, C)


def test_informational_redirect_times_out() -> None:
    """A client that never moves loses its SA after ``redirect_delete_timeout``; a client
    that never offered support is not redirected at all."""
    net = Net()
    gw_b = net.add(B, config("gw@test", redirect_delete_timeout=10.0))
    net.client.initiate(B, 0.0)
    net.pump()
    (gw_sa,) = list(gw_b)
    # The client's target (C) does not exist: it answers, starts an SA nobody answers.
    assert gw_b.redirect(gw_sa.local_spi, IPv4Address("127.0.0.4"), 1.0)
    net.pump(1.0)
    net.tick(11.0)
    assert len(gw_b) == 0
    (gone,) = net.of(B, IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted)

    quiet = Net(config("client@test", follow_redirects=False))
    gw = quiet.add(B)
    quiet.client.initiate(B, 0.0)
    quiet.pump()
    (sa,) = list(gw)
    assert not gw.redirect(sa.local_spi, IPv4Address("127.0.0.4"), 1.0)


def test_informational_redirect_retransmitted() -> None:
    """The INFORMATIONAL redirect is retransmitted until the client answers."""
    net = Net()
    gw_b = net.add(B)
    net.add(C)
    net.client.initiate(B, 0.0)
    net.pump()
    (gw_sa,) = list(gw_b)
    assert gw_b.redirect(gw_sa.local_spi, IPv4Address("127.0.0.4"), 1.0)
    assert not gw_b.redirect(gw_sa.local_spi, IPv4Address("127.0.0.4"), 1.0)  # only once
    assert gw_b.redirect_all(None, 1.0) == 0
    net.pump(1.0, lambda s, d, data: None if s == B else data)
    net.tick(3.5)
    sent = [
        m
        for m in net.messages(B, CL)
        if m.exchange_type == ExchangeType.INFORMATIONAL and not m.response
    ]
    assert len(sent) == 2 and sent[0].message_id == sent[1].message_id
    assert established(net, CL)[-1].peer_address == C


# --- IKE_AUTH ---------------------------------------------------------------------------------


class ByIdentity(RedirectPolicy):
    """Redirects one identity in IKE_AUTH only."""

    def allow_redirect(self, request: RedirectRequest) -> bool:
        return request.exchange == "IKE_AUTH" and request.peer_id == "client@test"


def test_auth_redirect() -> None:
    """After verifying the client's AUTH the gateway answers IDr, AUTH and N(REDIRECT)
    without Nonce Data and without a CHILD_SA; the client verifies the gateway, deletes
    the SA and goes to the new gateway."""
    net = Net()
    gw_a = net.add(
        A, policy=ByIdentity(StaticGateways([IPv4Address("127.0.0.3")]), always=True, in_auth=True)
    )
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    (moved,) = net.of(CL, IkeSaRedirected)
    assert isinstance(moved, IkeSaRedirected) and moved.exchange == "IKE_AUTH"
    assert str(moved.peer_id) == "gw@test"
    (sent,) = net.of(A, ClientRedirected)
    assert isinstance(sent, ClientRedirected) and sent.exchange == "IKE_AUTH"
    assert not net.of(A, ChildSaEstablished) and not net.of(A, IkeSaEstablished)
    assert [u.peer_address for u in established(net, CL)] == [B]
    assert len(gw_a) == 0 and gw_a.redirects == {"static": 1}
    (from_a,) = [
        m.notify(NotifyType.REDIRECTED_FROM)
        for m in net.messages(CL, B)
        if m.exchange_type == ExchangeType.IKE_SA_INIT
    ]
    assert from_a is not None


def test_auth_redirect_deleted_after_timeout() -> None:
    """A client that never deletes the redirected SA loses it after the timeout."""
    net = Net(config("client@test", follow_redirects=True))
    gw_a = net.add(
        A,
        config("gw@test", redirect_delete_timeout=5.0),
        ByIdentity(StaticGateways([IPv4Address("127.0.0.3")]), always=True, in_auth=True),
    )
    net.client.initiate(A, 0.0)
    net.pump(0.0, lambda s, d, data: None if s == CL and d == A and data[18] == 37 else data)
    assert len(gw_a) == 1
    net.tick(6.0)
    assert len(gw_a) == 0


# --- gateway identities, anycast, REDIRECTED_FROM allow-list ----------------------------------


@pytest.mark.parametrize(
    "target", ["127.0.0.3", "2001:db8::3", "vpn3.example.org"], ids=["ipv4", "ipv6", "fqdn"]
)
def test_gateway_identity_kinds(target: str) -> None:
    """The REDIRECT names an IPv4, IPv6 or FQDN gateway; an FQDN is reported for the
    caller to resolve (no SA is started in the core)."""
    net = Net()
    net.add(A, policy=static(target, always=True))
    net.client.initiate(A, 0.0)
    net.pump()
    (moved,) = net.of(CL, IkeSaRedirected)
    assert isinstance(moved, IkeSaRedirected)
    assert moved.new_gateway == parse_gateway(target)
    if isinstance(moved.new_gateway, IPv4Address | IPv6Address):
        assert moved.new_spi_i is not None
    else:
        assert moved.new_spi_i is None


def test_follow_redirect_after_resolution() -> None:
    """After resolving an FQDN target the caller starts the SA with REDIRECTED_FROM."""
    net = Net()
    net.add(A, policy=static("vpn3.example.org", always=True))
    net.add(B)
    net.client.initiate(A, 0.0)
    net.pump()
    (moved,) = net.of(CL, IkeSaRedirected)
    assert isinstance(moved, IkeSaRedirected)
    net.client.initiate(B, 1.0, redirected_from=ip_address("127.0.0.2"), redirect_times=(0.0,))
    net.pump(1.0)
    assert established(net, CL)[0].peer_address == B
    assert net.nodes[B].redirected_from == {"127.0.0.2": 1}


def test_anycast_always_redirects_to_unicast() -> None:
    """A request to an anycast address is redirected to a unicast gateway, this gateway's
    own when it is not overloaded, another one when it is."""
    anycast = ("127.0.0.10", 500)
    net = Net()
    policy = RedirectPolicy(
        StaticGateways([IPv4Address("127.0.0.3")]),
        anycast=["127.0.0.10"],
        unicast=IPv4Address("127.0.0.2"),
    )
    gw = net.add(anycast, policy=policy)
    net.add(A)
    net.add(B)
    net.client.initiate(anycast, 0.0)
    net.pump()
    assert established(net, CL)[0].peer_address == A and gw.redirects == {"anycast": 1}
    assert net.nodes[A].redirected_from == {"127.0.0.10": 1}
    policy.draining = True
    net.client.initiate(anycast, 1.0)
    net.pump(1.0)
    assert established(net, CL)[1].peer_address == B and len(gw) == 0


def test_redirected_from_allow_list() -> None:
    """A gateway that accepts only clients redirected from listed gateways drops others
    that carry REDIRECTED_FROM, and counts them."""
    net = Net()
    net.add(A, policy=static("127.0.0.3", always=True))
    gw_b = net.add(B, config("gw@test", redirected_from_allowed=frozenset({"127.0.0.9"})))
    net.client.initiate(A, 0.0)
    net.pump()
    assert not established(net, CL) and len(gw_b) == 0
    assert gw_b.counters["redirected_from_refused"] == 1


def test_static_round_robin_and_weights() -> None:
    """Round robin takes the gateways in turn skipping excluded ones; weights interleave
    picks in proportion."""
    gws = StaticGateways([parse_gateway(g) for g in ("10.0.0.1", "10.0.0.2", "10.0.0.3")])
    assert [str(gws.pick(["10.0.0.2"])) for _ in range(4)] == [
        "10.0.0.1",
        "10.0.0.3",
        "10.0.0.1",
        "10.0.0.3",
    ]
    weighted = StaticGateways([parse_gateway("10.0.0.1"), parse_gateway("10.0.0.2")], [3, 1])
    picks = [str(weighted.pick([])) for _ in range(8)]
    assert picks.count("10.0.0.1") == 6 and picks.count("10.0.0.2") == 2
    assert picks[:4] != ["10.0.0.1"] * 4 or picks[4:] != ["10.0.0.2"] * 4
    assert StaticGateways([]).pick([]) is None
    six = StaticGateways([parse_gateway("2001:db8::3"), parse_gateway("10.0.0.1")])
    assert str(six.pick(["2001:0db8:0:0::3"])) == "10.0.0.1"
    with pytest.raises(ValueError):
        StaticGateways([parse_gateway("10.0.0.1")], [0])
    with pytest.raises(ValueError):
        parse_gateway("bad name")


def test_rekeyed_sa_keeps_redirect_state() -> None:
    """After an IKE SA rekey the gateway can still redirect the client."""
    net = Net()
    gw_b = net.add(B)
    net.add(C)
    net.client.initiate(B, 0.0)
    net.pump()
    (sa,) = [s for s in net.client if s.state == State.ESTABLISHED]
    net.client.rekey_ike_sa(sa.local_spi, 1.0)
    net.pump(1.0)
    (gw_sa,) = [s for s in gw_b if s.state == State.ESTABLISHED]
    assert gw_b.redirect(gw_sa.local_spi, IPv4Address("127.0.0.4"), 2.0)
    net.pump(2.0)
    assert established(net, CL)[-1].peer_address == C


def test_quick_scan_matches_full_decoding() -> None:
    """The redirector's header walk accepts exactly the plain first contacts (SA, KE, a
    valid Ni, REDIRECT_SUPPORTED) and leaves everything else to the full decoder, which
    answers the same redirect."""
    from twisted_rserpool.ike.codec import scan_init_for_redirect as _scan_for_redirect

    net = Net()
    net.client.initiate(A, 0.0)
    ((data, _),) = net.client.datagrams_to_send()
    nonce = decode_message(data).find(NoncePayload)
    assert nonce is not None and _scan_for_redirect(data) == nonce.data
    assert _scan_for_redirect(data[:-1]) is None
    assert _scan_for_redirect(data[:24] + (len(data) + 4).to_bytes(4, "big") + data[28:]) is None
    quiet = Net(config("client@test", follow_redirects=False))
    quiet.client.initiate(A, 0.0)
    ((plain, _),) = quiet.client.datagrams_to_send()
    assert _scan_for_redirect(plain) is None
    answers = []
    for cookie_threshold in (50, 0):  # 0: cookies on, so the full path runs
        gw = IkeEndpoint(
            config("gw@test", cookie_threshold=cookie_threshold),
            A,
            redirect_policy=static("127.0.0.3", always=True),
            cookie_secret=b"k" * 32,
        )
        gw.receive_datagram(data, CL, 0.0)
        ((answer, _),) = gw.datagrams_to_send()
        answers.append(decode_message(answer))
    assert answers[0].notify(NotifyType.REDIRECT) is not None
    assert answers[1].notify(NotifyType.COOKIE) is not None


@pytest.mark.parametrize("target", ["127.0.0.3", "2001:db8::3", "vpn3.example.org"])
def test_init_redirect_octets(target: str) -> None:
    """The directly built IKE_SA_INIT redirect equals the codec's encoding of the message."""
    from twisted_rserpool.ike.codec import init_redirect_response

    spi, nonce = bytes(range(8)), bytes(range(32))
    expected = IkeMessage(
        spi,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        (redirect_notify(parse_gateway(target), nonce),),
        initiator=False,
        response=True,
    ).encode()
    assert init_redirect_response(spi, parse_gateway(target), nonce) == expected
