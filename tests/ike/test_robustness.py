"""Robustness of the IKE SA: what a redirect reports about authentication, too many traffic
selectors, liveness by default (in-memory endpoints, injected clock)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from tests.ike.test_gateway import FakeReactor
from tests.ike.test_redirect import CL, A, B, config, static
from tests.ike.test_redirect_initiator import Observer, Resolver, Wire
from tests.ike.test_sa import GW, Pair, forge, of
from tests.ike.test_sa import config as sa_config
from tests.ike.test_tap import parse
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.child import any_selector, narrow, selector_from_network
from twisted_rserpool.ike.codec import (
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    SecurityAssociationPayload,
    TrafficSelector,
    TsInitiatorPayload,
    TsResponderPayload,
    decode_message,
    decode_payload_chain,
)
from twisted_rserpool.ike.config import (
    DEFAULT_IKE_SUITES,
    DEFAULT_INITIATOR_IKE_SUITES,
    DEFAULT_LIVENESS_INTERVAL,
    DEFAULT_MAX_TRAFFIC_SELECTORS,
    Identity,
    IkeConfig,
    PskTable,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType, TransformType
from twisted_rserpool.ike.crypto import DhGroupId, IntegrityId, PrfId
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.gateway import IkeDatagramProtocol, IkeGatewayProtocol
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol
from twisted_rserpool.ike.proposals import (
    OfferedProposal,
    child_proposal,
    parse_child_suites,
    parse_ike_suites,
)
from twisted_rserpool.ike.tasks.common import to_payload


def _redirecting_pair(in_auth: bool) -> tuple[IkeInitiatorProtocol, Wire, Observer]:
    observer = Observer()
    policy = static(B[0], always=True, in_auth=in_auth)
    gw_a = IkeEndpoint(config("gw-a@test"), A, redirect_policy=policy)
    gw_b = IkeEndpoint(config("gw-b@test"), B)
    client = IkeEndpoint(config("client@test"), CL)
    protocol = IkeInitiatorProtocol(client, Clock(), [observer], Resolver({}))
    wire = Wire(protocol, {A: gw_a, B: gw_b})
    protocol.transport = wire  # type: ignore[assignment]
    return protocol, wire, observer


def test_auth_redirect_reports_the_verified_authentication() -> None:
    """After a redirect in IKE_AUTH the old gateway's AUTH was verified: the failover
    report names its identity and authentication (PSK and the IKE suite), not "none"."""
    protocol, wire, observer = _redirecting_pair(in_auth=True)
    results: list[IkeSaEstablished] = []
    protocol.initiate(A).addCallback(results.append)
    for _ in range(3):
        wire.pump()
    (up,) = results
    assert up.peer_address == B
    (event,) = observer.events
    assert event.reason == "redirected in IKE_AUTH"
    assert event.old_identity == "gw-a@test" and event.new_identity == "gw-b@test"
    assert event.old_authentication.startswith("PSK, ")
    assert event.old_authentication == event.new_authentication == f"PSK, {up.suite}"
    assert up.authentication == event.new_authentication
    assert "none" not in event.describe()


def test_init_redirect_reports_no_authentication() -> None:
    """In IKE_SA_INIT nothing of the old gateway was authenticated: "none" stays true."""
    protocol, wire, observer = _redirecting_pair(in_auth=False)
    protocol.initiate(A)
    for _ in range(3):
        wire.pump()
    (event,) = observer.events
    assert event.reason == "redirected in IKE_SA_INIT"
    assert event.old_identity is None and event.old_authentication == "none"
    assert event.new_authentication.startswith("PSK, ")


# --- too many traffic selectors ------------------------------------------------------------


def _hosts(first: str, count: int) -> tuple[TrafficSelector, ...]:
    base = int(IPv4Address(first))
    return tuple(
        TrafficSelector(IPv4Address(base + i), IPv4Address(base + i)) for i in range(count)
    )


def _child_pair(
    offered: tuple[TrafficSelector, ...], **gw: object
) -> tuple[Pair, list[object], list[object]]:
    pair = Pair(
        sa_config("gw@test", **gw),
        sa_config("client@test", local_ts=offered, remote_ts=(any_selector(4),)),
    )
    pair.establish()
    return pair, of(pair.gw_events, IkeSaEstablished), of(pair.cl_events, IkeSaEstablished)


@pytest.mark.parametrize("count", [65, 200, 255])
def test_too_many_selectors_are_narrowed(count: int) -> None:
    """A TSi of more selectors than max_traffic_selectors (64), up to the 255 a TS payload
    can carry, is narrowed to the first 64 in the initiator's order (RFC 7296 2.9): the
    IKE SA and the CHILD_SA are established on both sides, the client accepts the subset."""
    offered = _hosts("10.1.0.1", count)
    pair, gw_up, cl_up = _child_pair(offered)
    assert gw_up and cl_up
    assert not of(pair.gw_events, IkeSaFailed) and not of(pair.cl_events, ChildSaFailed)
    (gw_child,) = of(pair.gw_events, ChildSaEstablished)
    (cl_child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(gw_child, ChildSaEstablished) and isinstance(cl_child, ChildSaEstablished)
    assert gw_child.child.ts_i == cl_child.child.ts_i == offered[:DEFAULT_MAX_TRAFFIC_SELECTORS]


def test_selector_limit_is_configurable() -> None:
    """max_traffic_selectors=3 keeps the first three; the first choice stays first."""
    offered = _hosts("10.2.0.1", 10)
    pair, gw_up, cl_up = _child_pair(offered, max_traffic_selectors=3)
    assert gw_up and cl_up
    (cl_child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(cl_child, ChildSaEstablished)
    assert cl_child.child.ts_i == offered[:3]


def test_many_selectors_outside_policy_get_ts_unacceptable() -> None:
    """Many selectors of which none is within the gateway's policy: TS_UNACCEPTABLE for the
    CHILD_SA only; the IKE SA stays established on both sides and answers liveness."""
    offered = _hosts("10.3.0.1", 100)
    pair, gw_up, cl_up = _child_pair(offered, remote_ts=(selector_from_network("192.168.0.0/16"),))
    assert gw_up and cl_up
    (failed,) = of(pair.cl_events, ChildSaFailed)
    assert isinstance(failed, ChildSaFailed)
    assert failed.notify_type == NotifyType.TS_UNACCEPTABLE
    assert not of(pair.gw_events, ChildSaEstablished)
    assert len(pair.gw) == 1 and not of(pair.gw_events, IkeSaFailed)
    (up,) = cl_up
    assert isinstance(up, IkeSaEstablished)
    pair.cl.check_liveness(up.spi_i, 1.0)
    pair.pump(1.0)
    assert of(pair.cl_events, LivenessConfirmed)


def test_create_child_sa_with_255_selectors() -> None:
    """CREATE_CHILD_SA on an established IKE SA with 255 selectors in TSi and TSr (all a TS
    payload can carry): answered with a CHILD_SA of the first 64 of each, and a second
    request wholly outside policy gets TS_UNACCEPTABLE; the IKE SA stays both times."""
    pair = Pair(
        # Whole messages (no RFC 7383 fragments), so the answer can be read here.
        sa_config(
            "gw@test", remote_ts=(selector_from_network("10.5.0.0/16"),), fragmentation=False
        ),
        sa_config("client@test", fragmentation=False),
    )
    spi = pair.establish()
    sa = pair.cl.get(spi)
    assert sa is not None and sa.cipher_in is not None
    esp = SecurityAssociationPayload(
        (
            to_payload(
                OfferedProposal(1, 3, b"many", parse_child_suites("aes128gcm16")[0].transforms())
            ),
        )
    )
    many_i, many_r = _hosts("10.5.0.1", 255), _hosts("10.6.0.1", 255)
    outside = _hosts("10.7.0.1", 255)
    for tsi, accepted in ((many_i, True), (outside, False)):
        payloads = (
            esp,
            NoncePayload(b"n" * 32),
            TsInitiatorPayload(tsi),
            TsResponderPayload(many_r),
        )
        forge(sa, ExchangeType.CREATE_CHILD_SA, payloads, 1.0)
        pair.pump(1.0)
        answer = pair.sent[-1][1]
        message = decode_message(answer)
        assert message.encrypted is not None and message.response
        inner = decode_payload_chain(
            message.encrypted.first_payload_type, sa.cipher_in.open(answer, 28)
        )
        if accepted:
            (ts_i,) = [p for p in inner if isinstance(p, TsInitiatorPayload)]
            (ts_r,) = [p for p in inner if isinstance(p, TsResponderPayload)]
            assert ts_i.selectors == many_i[:64] and ts_r.selectors == many_r[:64]
        else:
            assert [type(p) for p in inner] == [NotifyPayload]
            assert inner[0].notify_type == NotifyType.TS_UNACCEPTABLE  # type: ignore[union-attr]
    assert len(pair.gw) == 1 and not of(pair.gw_events, IkeSaFailed)
    assert pair.cl.get(spi) is not None


def test_narrowing_stops_at_the_limit() -> None:
    """narrow() with a limit keeps the first results and drops duplicates."""
    offered = _hosts("10.4.0.1", 5) * 2
    assert narrow(offered, [any_selector(4)], 3) == offered[:3]
    assert narrow(offered, [any_selector(4)]) == offered[:5]


# --- liveness by default -----------------------------------------------------------------


class _Link:
    """Carries datagrams between two Twisted protocols until it is cut."""

    def __init__(self, peer: IkeDatagramProtocol, source: tuple[str, int]) -> None:
        self.peer = peer
        self.source = source
        self.up = True

    def write(self, data: bytes, address: tuple[str, int]) -> None:
        if self.up:
            self.peer.datagramReceived(data, self.source)


class _Recording(IkeGatewayProtocol):
    def __init__(self, endpoint: IkeEndpoint, clock: Clock) -> None:
        super().__init__(endpoint, clock)
        self.seen: list[IkeEvent] = []

    def ikeEventReceived(self, event: IkeEvent) -> None:
        self.seen.append(event)
        super().ikeEventReceived(event)


def test_liveness_on_by_default_removes_a_vanished_peer() -> None:
    """With the default config the gateway checks liveness after 30 s of silence; a client
    that vanished is declared unreachable once the retransmissions are used up, and its
    IKE SA and CHILD_SA go away (Twisted protocols on an injected clock)."""
    assert IkeConfig(Identity.parse("x@test"), PskTable()).liveness_interval == 30.0
    clock = Clock()
    gw = _Recording(IkeEndpoint(sa_config("gw@test"), GW), clock)
    cl = IkeInitiatorProtocol(IkeEndpoint(sa_config("client@test"), CL), clock)
    to_gw, to_cl = _Link(gw, CL), _Link(cl, GW)
    cl.transport = to_gw  # type: ignore[assignment]
    gw.transport = to_cl  # type: ignore[assignment]
    up: list[IkeSaEstablished] = []
    cl.initiate(GW).addCallback(up.append)
    assert up and len(gw.endpoint) == 1
    assert gw.endpoint.next_deadline() == DEFAULT_LIVENESS_INTERVAL
    # A live client answers the check; the SA stays.
    clock.advance(DEFAULT_LIVENESS_INTERVAL)
    assert len(gw.endpoint) == 1 and len(cl.endpoint) == 1
    assert gw.endpoint.next_deadline() == 2 * DEFAULT_LIVENESS_INTERVAL  # answered: heard at 30
    # The client vanishes: nothing reaches it any more.
    to_cl.up = False
    to_gw.up = False
    for _ in range(20):
        if len(gw.endpoint) == 0:
            break
        clock.advance(30.0)
    assert len(gw.endpoint) == 0
    (deleted,) = [e for e in gw.seen if isinstance(e, IkeSaDeleted)]
    assert deleted.reason == "peer unreachable"
    assert not gw.endpoint.installer.installed  # type: ignore[attr-defined]


def test_liveness_can_be_disabled() -> None:
    """liveness_interval=None: an idle established SA has no timer at all."""
    pair = Pair(sa_config("gw@test", liveness_interval=None), sa_config("client@test"))
    pair.establish()
    assert pair.gw.next_deadline() is None
    assert pair.cl.next_deadline() == DEFAULT_LIVENESS_INTERVAL


@pytest.mark.parametrize(
    ("args", "interval", "limit"),
    [
        ([], DEFAULT_LIVENESS_INTERVAL, DEFAULT_MAX_TRAFFIC_SELECTORS),
        (["--liveness-interval", "0"], None, DEFAULT_MAX_TRAFFIC_SELECTORS),
        (["--liveness-interval", "12.5", "--max-traffic-selectors", "8"], 12.5, 8),
    ],
)
def test_vpngw_options(args: list[str], interval: float | None, limit: int) -> None:
    """`twistd vpngw`: liveness on by default every 30 s (0 disables), the selector limit;
    both documented in --help and handed to the endpoint's config."""
    help_text = " ".join(str(vpngw.Options()).split())  # type: ignore[no-untyped-call]
    assert "--liveness-interval=" in help_text and "0 disables" in help_text
    assert "[default: 30.0]" in help_text and "TS_UNACCEPTABLE" in help_text
    options = parse(*args)
    reactor = FakeReactor()
    service = vpngw.makeService(options, reactor)
    service.startService()  # type: ignore[no-untyped-call]
    protocol = reactor.listened[0][1]  # port 500 (the NAT-T port may follow)
    assert isinstance(protocol, IkeGatewayProtocol)
    config = protocol.endpoint.config
    assert (config.liveness_interval, config.max_traffic_selectors) == (interval, limit)
    service.stopService()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("args", [["--liveness-interval", "-1"], ["--max-traffic-selectors", "0"]])
def test_vpngw_bad_values(args: list[str]) -> None:
    """Negative intervals and a zero selector limit are usage errors."""
    with pytest.raises(usage.UsageError):
        parse(*args)


# --- our initiator's own defaults ----------------------------------------------------------


def _offered_transforms(data: bytes) -> set[tuple[int, int]]:
    message = decode_message(data)
    sa_payload = message.find(SecurityAssociationPayload)
    assert sa_payload is not None
    return {(t.transform_type, t.transform_id) for p in sa_payload.proposals for t in p.transforms}


def test_initiator_default_offers_no_sha1_and_guesses_x25519() -> None:
    """A default initiator sends KE X25519 first and offers no SHA-1 PRF or SHA1_96
    integrity in IKE or ESP, while a default gateway still accepts them (RFC 8247 MUST-)."""
    cl_config = sa_config("client@test")
    assert cl_config.ike_suites == DEFAULT_IKE_SUITES
    assert cl_config.offered_ike_suites == DEFAULT_INITIATOR_IKE_SUITES
    assert cl_config.offered_ike_suites[0].dh == DhGroupId.CURVE25519
    assert not any(s.legacy for s in cl_config.offered_ike_suites)
    assert not any(s.legacy for s in cl_config.offered_child_suites)
    assert any(s.legacy for s in cl_config.ike_suites)  # still accepted as a responder
    pair = Pair(sa_config("gw@test"), cl_config)
    pair.cl.initiate(GW, 0.0)
    ((init, _),) = pair.cl.datagrams_to_send()
    ke = decode_message(init).find(KeyExchangePayload)
    assert ke is not None and ke.dh_group == DhGroupId.CURVE25519
    offered = _offered_transforms(init)
    assert (TransformType.PRF, PrfId.HMAC_SHA1) not in offered
    assert (TransformType.INTEG, IntegrityId.HMAC_SHA1_96) not in offered
    esp = {
        (t.type, t.id)
        for p in child_proposal(cl_config.offered_child_suites, b"\0\0\0\1")
        for t in p.transforms
    }
    assert (TransformType.INTEG, IntegrityId.HMAC_SHA1_96) not in esp
    pair.gw.receive_datagram(init, CL, 0.0)
    pair.pump()
    (up,) = of(pair.cl_events, IkeSaEstablished)
    assert isinstance(up, IkeSaEstablished) and up.suite.dh == DhGroupId.CURVE25519
    (child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(child, ChildSaEstablished) and not child.child.suite.legacy


def test_default_gateway_still_accepts_a_sha1_initiator() -> None:
    """An initiator configured for legacy SHA-1 (ike_suites given: offered as given) is
    accepted by a default gateway."""
    legacy = parse_ike_suites("aes128-sha1-modp2048")
    pair = Pair(
        sa_config("gw@test"),
        sa_config("client@test", ike_suites=legacy, child_suites=parse_child_suites("aes128-sha1")),
    )
    pair.establish()
    (up,) = of(pair.gw_events, IkeSaEstablished)
    assert isinstance(up, IkeSaEstablished) and up.suite == legacy[0] and up.suite.legacy
    (child,) = of(pair.gw_events, ChildSaEstablished)
    assert isinstance(child, ChildSaEstablished) and child.child.suite.legacy


def test_initiator_suites_can_be_set_apart() -> None:
    """initiator_ike_suites / initiator_child_suites override what we offer only."""
    mine = parse_ike_suites("aes256gcm16-prfsha384-ecp384")
    esp = parse_child_suites("aes256gcm16")
    cfg = sa_config("client@test", initiator_ike_suites=mine, initiator_child_suites=esp)
    assert (cfg.offered_ike_suites, cfg.offered_child_suites) == (mine, esp)
    assert cfg.ike_suites == DEFAULT_IKE_SUITES
    pair = Pair(sa_config("gw@test"), cfg)
    pair.establish()
    (up,) = of(pair.cl_events, IkeSaEstablished)
    assert isinstance(up, IkeSaEstablished) and up.suite == mine[0]
    with pytest.raises(ValueError, match="initiator_ike_suites"):
        sa_config("client@test", initiator_ike_suites=())
