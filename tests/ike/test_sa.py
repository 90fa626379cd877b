"""Two in-memory IKE endpoints (initiator and responder) exchange datagrams without sockets."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import pytest

from twisted_rserpool.ike import crypto
from twisted_rserpool.ike.child import (
    RecordingChildSAInstaller,
    any_selector,
    selector_from_network,
)
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.crypto import DH_GROUPS, DhGroupId, EncryptionId, IntegrityId, PrfId
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.payloads import (
    IkeHeader,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SecurityAssociationPayload,
    TsInitiatorPayload,
    TsResponderPayload,
    UnknownPayload,
    decode_message,
    decode_payload_chain,
)
from twisted_rserpool.ike.proposals import (
    ChildSuite,
    IkeSuite,
    OfferedProposal,
    OfferedTransform,
    parse_child_suites,
    parse_ike_suites,
)
from twisted_rserpool.ike.sa import IkeSa, State, to_payload
from twisted_rserpool.ike.tasks import Task
from twisted_rserpool.ike.window import Outstanding

GW = ("127.0.0.2", 500)
CL = ("127.0.0.1", 1500)
PSK = PskTable(default=b"test-psk")

Datagram = tuple[bytes, tuple[str, int]]
Filter = Callable[[str, bytes], bytes | None]


class Forged(Task):
    """A request of the test's own making; the test reads the answer off the wire.

    An exchange type an established SA never starts (IKE_INTERMEDIATE, say) goes out as
    INFORMATIONAL as far as the window knows, so its answer is never matched.
    """

    name = "forged"

    def __init__(self, sa: IkeSa, exchange: int, payloads: tuple[Payload, ...]) -> None:
        super().__init__(sa)
        known = (ExchangeType.INFORMATIONAL, ExchangeType.CREATE_CHILD_SA)
        self.exchange = exchange if exchange in known else ExchangeType.INFORMATIONAL
        self.wire_exchange = exchange
        self.payloads = payloads
        self.answers: list[tuple[Payload, ...]] = []

    def build(self, now: float) -> tuple[Payload, ...]:
        return self.payloads

    def encode(self, message_id: int, payloads: Sequence[Payload]) -> bytes:
        return self.sa.seal(self.wire_exchange, message_id, False, payloads)

    def process(
        self, payloads: tuple[Payload, ...], request: Outstanding[Task], now: float
    ) -> None:
        self.answers.append(payloads)


def forge(sa: IkeSa, exchange: int, payloads: tuple[Payload, ...], now: float) -> Forged:
    """Queue a forged protected request on ``sa``."""
    task = Forged(sa, exchange, payloads)
    sa.queue(task, now)
    return task


def config(identity: str, **kw: object) -> IkeConfig:
    return IkeConfig(Identity.parse(identity), kw.pop("psks", PSK), **kw)  # type: ignore[arg-type]


class Pair:
    """A client (initiator) and a gateway (responder) wired back to back."""

    def __init__(
        self,
        gw_config: IkeConfig | None = None,
        cl_config: IkeConfig | None = None,
        gw_address: tuple[str, int] = GW,
        cl_address: tuple[str, int] = CL,
    ) -> None:
        self.gw_installer = RecordingChildSAInstaller()
        self.cl_installer = RecordingChildSAInstaller()
        self.gw = IkeEndpoint(
            gw_config or config("gw@test"), gw_address, installer=self.gw_installer
        )
        self.cl = IkeEndpoint(
            cl_config or config("client@test"), cl_address, installer=self.cl_installer
        )
        self.gw_events: list[IkeEvent] = []
        self.cl_events: list[IkeEvent] = []
        self.sent: list[tuple[str, bytes]] = []

    def pump(self, now: float = 0.0, drop: Filter | None = None) -> None:
        """Deliver datagrams both ways until none are left; ``drop`` may drop or alter them."""
        self.cl_events += self.cl.events()
        self.gw_events += self.gw.events()
        for _ in range(50):
            moved = False
            for name, src, dst, events in (
                ("cl", self.cl, self.gw, self.gw_events),
                ("gw", self.gw, self.cl, self.cl_events),
            ):
                for sent, _address in src.datagrams_to_send():
                    moved = True
                    self.sent.append((name, sent))
                    data: bytes | None = sent if drop is None else drop(name, sent)
                    if data is not None:
                        events.extend(dst.receive_datagram(data, src.local_address, now))
            if not moved:
                return
        raise AssertionError("endless exchange")

    def tick(self, now: float) -> None:
        """Run both endpoints' timers at ``now``."""
        self.cl_events += self.cl.handle_timer(now)
        self.gw_events += self.gw.handle_timer(now)

    def establish(self, now: float = 0.0) -> bytes:
        spi = self.cl.initiate(self.gw.local_address, now)
        self.pump(now)
        return spi


def of(events: list[IkeEvent], kind: type[object]) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def exchange_of(data: bytes) -> tuple[int, bool]:
    message = decode_message(data)
    return message.exchange_type, message.response


ALL_IKE_SUITES = [
    IkeSuite(encr, bits, prf, integ, dh)
    for dh in DhGroupId
    for prf in PrfId
    for encr, bits, integ in itertools.chain(
        ((EncryptionId.AES_CBC, b, i) for b in (128, 256) for i in IntegrityId if i),
        ((EncryptionId.AES_GCM_16, b, None) for b in (128, 256)),
        [(EncryptionId.CHACHA20_POLY1305, 256, None)],
    )
]


@pytest.mark.parametrize("suite", ALL_IKE_SUITES, ids=str)
def test_every_ike_suite(suite: IkeSuite) -> None:
    """Each IKE suite (encryption x PRF x integrity x DH group) establishes an IKE SA and a
    CHILD_SA whose keys both sides derive identically."""
    pair = Pair(config("gw@test", ike_suites=(suite,)), config("client@test", ike_suites=(suite,)))
    pair.establish()
    (gw_up,) = of(pair.gw_events, IkeSaEstablished)
    (cl_up,) = of(pair.cl_events, IkeSaEstablished)
    assert isinstance(gw_up, IkeSaEstablished) and isinstance(cl_up, IkeSaEstablished)
    assert gw_up.suite == cl_up.suite == suite
    assert (gw_up.spi_i, gw_up.spi_r) == (cl_up.spi_i, cl_up.spi_r)
    assert str(gw_up.peer_id) == "client@test" and str(cl_up.peer_id) == "gw@test"
    assert not gw_up.peer_behind_nat and not cl_up.local_behind_nat
    (gw_child,) = of(pair.gw_events, ChildSaEstablished)
    (cl_child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(gw_child, ChildSaEstablished) and isinstance(cl_child, ChildSaEstablished)
    g, c = gw_child.child, cl_child.child
    assert g.inbound_spi == c.outbound_spi and g.outbound_spi == c.inbound_spi
    assert g.encryption_key_i == c.encryption_key_i and g.integrity_key_r == c.integrity_key_r
    assert g.encryption_key_i != g.encryption_key_r
    assert pair.gw_installer.installed[g.inbound_spi] == g


ALL_CHILD_SUITES = [
    ChildSuite(encr, bits, integ, esn)
    for esn in (False, True)
    for encr, bits, integ in itertools.chain(
        ((EncryptionId.AES_CBC, b, i) for b in (128, 256) for i in IntegrityId if i),
        ((EncryptionId.AES_GCM_16, b, None) for b in (128, 256)),
        [(EncryptionId.CHACHA20_POLY1305, 256, None)],
    )
]


@pytest.mark.parametrize("suite", ALL_CHILD_SUITES, ids=str)
def test_every_child_suite(suite: ChildSuite) -> None:
    """Each ESP suite is negotiated, with KEYMAT of the suite's length in both directions."""
    pair = Pair(
        config("gw@test", child_suites=(suite,)), config("client@test", child_suites=(suite,))
    )
    pair.establish()
    (child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(child, ChildSaEstablished)
    assert child.child.suite == suite
    assert len(child.child.encryption_key_r) == suite.encryption_transform.key_material_length
    integ = len(child.child.integrity_key_i)
    assert integ == {None: 0, 2: 20, 12: 32, 13: 48, 14: 64}[suite.integrity]


def test_responder_prefers_offered_ke_group() -> None:
    """When several offered proposals are acceptable, the one matching the KE group wins."""
    cl_suites = parse_ike_suites("aes128-sha256-ecp256, aes128-sha256-x25519")
    gw_suites = parse_ike_suites("aes128-sha256-x25519, aes128-sha256-ecp256")
    pair = Pair(
        config("gw@test", ike_suites=gw_suites), config("client@test", ike_suites=cl_suites)
    )
    pair.establish()
    (up,) = of(pair.gw_events, IkeSaEstablished)
    assert isinstance(up, IkeSaEstablished) and up.suite.dh == DhGroupId.ECP_256
    assert pair.gw.counters["invalid_ke_sent"] == 0


def test_invalid_ke_payload_retry() -> None:
    """A responder without the initiator's KE group answers INVALID_KE_PAYLOAD; the
    initiator retries with the requested group and the same SPIi."""
    pair = Pair(
        config("gw@test", ike_suites=parse_ike_suites("aes128-sha256-modp2048")),
        config(
            "client@test",
            ike_suites=parse_ike_suites("aes128-sha256-x25519, aes128-sha256-modp2048"),
        ),
    )
    pair.establish()
    assert pair.gw.counters["invalid_ke_sent"] == 1
    inits = [
        decode_message(d) for n, d in pair.sent if exchange_of(d)[0] == ExchangeType.IKE_SA_INIT
    ]
    assert len(inits) == 4
    assert inits[1].notify(NotifyType.INVALID_KE_PAYLOAD) is not None
    assert inits[1].notify(NotifyType.INVALID_KE_PAYLOAD).data == b"\x00\x0e"  # type: ignore[union-attr]
    assert inits[0].spi_i == inits[2].spi_i
    ke = inits[2].find(KeyExchangePayload)
    assert ke is not None and ke.dh_group == 14 and len(ke.data) == 256
    (up,) = of(pair.cl_events, IkeSaEstablished)
    assert isinstance(up, IkeSaEstablished) and up.suite.dh == DhGroupId.MODP_2048


def test_invalid_ke_for_group_we_do_not_have() -> None:
    """INVALID_KE_PAYLOAD naming a group the initiator does not offer fails the SA."""
    pair = Pair(
        config("gw@test"),
        config("client@test", ike_suites=parse_ike_suites("aes128-sha256-x25519")),
    )
    spi = pair.cl.initiate(GW, 0.0)

    def rewrite(name: str, data: bytes) -> bytes | None:
        if name == "cl":
            message = decode_message(data)
            answer = IkeMessage(
                message.spi_i,
                bytes(8),
                ExchangeType.IKE_SA_INIT,
                0,
                (NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, b"\x00\x14"),),
                response=True,
            )
            pair.cl_events.extend(pair.cl.receive_datagram(answer.encode(), GW, 0.0))
            return None
        return data

    pair.pump(0.0, rewrite)
    (failed,) = of(pair.cl_events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and failed.notify_type == NotifyType.INVALID_KE_PAYLOAD
    assert pair.cl.get(spi) is None


def test_no_proposal_chosen() -> None:
    """Disjoint IKE proposals: the responder answers NO_PROPOSAL_CHOSEN and keeps no state."""
    pair = Pair(
        config("gw@test", ike_suites=parse_ike_suites("aes256gcm16-prfsha512-ecp384")),
        config("client@test", ike_suites=parse_ike_suites("aes128-sha256-x25519")),
    )
    pair.establish()
    (failed,) = of(pair.cl_events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and failed.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
    assert len(pair.gw) == 0 and len(pair.cl) == 0 and pair.gw.half_open == 0
    assert pair.gw.next_deadline() is None and pair.cl.next_deadline() is None


def test_cookie_exchange() -> None:
    """Above the half-open threshold the responder demands a cookie without keeping state;
    the initiator repeats IKE_SA_INIT with N(COOKIE) first and the SA comes up."""
    pair = Pair(config("gw@test", cookie_threshold=0))
    pair.establish()
    assert pair.gw.counters["cookies_sent"] == 1
    first_answer = decode_message(pair.sent[1][1])
    assert first_answer.spi_r == bytes(8)
    cookie = first_answer.notify(NotifyType.COOKIE)
    assert cookie is not None and len(cookie.data) == 36
    retry = decode_message(pair.sent[2][1])
    assert retry.payloads[0] == cookie
    assert of(pair.gw_events, IkeSaEstablished) and of(pair.cl_events, IkeSaEstablished)


def test_cookie_threshold_counts_half_open() -> None:
    """Cookies are demanded only once the number of half-open SAs reaches the threshold,
    and a cookie from a rotated-out secret is refused."""
    gw = IkeEndpoint(config("gw@test", cookie_threshold=1), GW)
    client = IkeEndpoint(config("client@test"), CL)
    client.initiate(GW, 0.0)
    ((request, _),) = client.datagrams_to_send()
    gw.receive_datagram(request, CL, 0.0)
    assert gw.half_open == 1 and gw.counters["cookies_sent"] == 0
    other = IkeEndpoint(config("client@test"), ("127.0.0.5", 500))
    other.initiate(GW, 0.0)
    ((request2, _),) = other.datagrams_to_send()
    gw.datagrams_to_send()
    gw.receive_datagram(request2, ("127.0.0.5", 500), 0.0)
    ((answer, _),) = gw.datagrams_to_send()
    cookie = decode_message(answer).notify(NotifyType.COOKIE)
    assert cookie is not None and len(gw) == 1
    # A wrong cookie is answered with a fresh cookie, never with state.
    message = decode_message(request2)
    forged = dataclasses.replace(
        message,
        payloads=(NotifyPayload(NotifyType.COOKIE, cookie.data[:-1] + b"\x00"), *message.payloads),
    )
    gw.receive_datagram(forged.encode(), ("127.0.0.5", 500), 0.0)
    assert len(gw) == 1 and gw.counters["cookies_sent"] == 2
    gw.datagrams_to_send()
    gw.rotate_cookie_secret()
    gw.rotate_cookie_secret()
    good = dataclasses.replace(message, payloads=(cookie, *message.payloads))
    gw.receive_datagram(good.encode(), ("127.0.0.5", 500), 0.0)
    assert len(gw) == 1 and gw.counters["cookies_sent"] == 3


def test_cookie_valid_after_one_rotation() -> None:
    """A cookie made just before a secret rotation is still accepted."""
    gw = IkeEndpoint(config("gw@test", cookie_threshold=0), GW)
    client = IkeEndpoint(config("client@test"), CL)
    client.initiate(GW, 0.0)
    ((request, _),) = client.datagrams_to_send()
    gw.receive_datagram(request, CL, 0.0)
    ((answer, _),) = gw.datagrams_to_send()
    gw.rotate_cookie_secret()
    client.receive_datagram(answer, GW, 0.0)
    ((retry, _),) = client.datagrams_to_send()
    gw.receive_datagram(retry, CL, 0.0)
    assert len(gw) == 1 and gw.half_open == 1


def test_wrong_psk() -> None:
    """Different pre-shared keys: the responder answers AUTHENTICATION_FAILED and both fail."""
    pair = Pair(cl_config=config("client@test", psks=PskTable(default=b"other")))
    pair.establish()
    (gw_failed,) = of(pair.gw_events, IkeSaFailed)
    (cl_failed,) = of(pair.cl_events, IkeSaFailed)
    assert isinstance(gw_failed, IkeSaFailed) and isinstance(cl_failed, IkeSaFailed)
    assert gw_failed.notify_type == cl_failed.notify_type == NotifyType.AUTHENTICATION_FAILED
    assert len(pair.gw) == len(pair.cl) == 0 and pair.gw.half_open == 0
    assert not of(pair.gw_events, IkeSaEstablished)


def test_unknown_client_identity() -> None:
    """A client identity without a key in the responder's table fails authentication."""
    table = PskTable({Identity.parse("alice@test"): b"test-psk"})
    pair = Pair(config("gw@test", psks=table))
    pair.establish()
    (failed,) = of(pair.cl_events, IkeSaFailed)
    assert (
        isinstance(failed, IkeSaFailed) and failed.notify_type == NotifyType.AUTHENTICATION_FAILED
    )
    pair2 = Pair(config("gw@test", psks=table), config("alice@test"))
    pair2.establish()
    assert of(pair2.gw_events, IkeSaEstablished)


def test_responder_identity_checked() -> None:
    """An initiator expecting another responder identity asks for it in IDr and is refused."""
    pair = Pair(cl_config=config("client@test", remote_id=Identity.parse("@other.example")))
    pair.establish()
    (failed,) = of(pair.gw_events, IkeSaFailed)
    assert (
        isinstance(failed, IkeSaFailed) and failed.notify_type == NotifyType.AUTHENTICATION_FAILED
    )
    ok = Pair(cl_config=config("client@test", remote_id=Identity.parse("gw@test")))
    ok.establish()
    assert of(ok.cl_events, IkeSaEstablished)


def test_childless() -> None:
    """With childless=force and a responder that announced RFC 6023 support, IKE_AUTH has
    no SA/TS and no CHILD_SA is made."""
    pair = Pair(cl_config=config("client@test", childless="force"))
    pair.establish()
    assert of(pair.gw_events, IkeSaEstablished) and of(pair.cl_events, IkeSaEstablished)
    assert not of(pair.gw_events, ChildSaEstablished) and not pair.gw_installer.installed
    auth = [d for n, d in pair.sent if n == "cl" and exchange_of(d)[0] == ExchangeType.IKE_AUTH]
    assert len(auth[0]) < 200  # IDi, AUTH and INITIAL_CONTACT only


def test_childless_refused_when_never() -> None:
    """A responder with childless=never does not announce support; an initiator forcing
    childless then asks for a CHILD_SA anyway."""
    pair = Pair(config("gw@test", childless="never"), config("client@test", childless="force"))
    pair.establish()
    assert of(pair.gw_events, ChildSaEstablished)
    init_response = decode_message(pair.sent[1][1])
    assert init_response.notify(NotifyType.CHILDLESS_IKEV2_SUPPORTED) is None


def test_childless_without_announcement_is_invalid_syntax() -> None:
    """IKE_AUTH without SA/TS to a responder that did not announce RFC 6023 support is
    answered with INVALID_SYNTAX and no IKE SA is established."""
    pair = Pair(config("gw@test", childless="never"), config("client@test", childless="force"))

    def announce(name: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if name == "gw" and message.exchange_type == ExchangeType.IKE_SA_INIT:
            fake = NotifyPayload(NotifyType.CHILDLESS_IKEV2_SUPPORTED)
            return dataclasses.replace(message, payloads=(*message.payloads, fake)).encode()
        return data

    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, announce)
    (failed,) = of(pair.gw_events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and failed.notify_type == NotifyType.INVALID_SYNTAX
    (cl_failed,) = of(pair.cl_events, IkeSaFailed)
    assert isinstance(cl_failed, IkeSaFailed) and cl_failed.notify_type == NotifyType.INVALID_SYNTAX


def test_child_no_proposal_keeps_ike_sa() -> None:
    """No common ESP proposal: the IKE SA is established, the CHILD_SA fails with
    NO_PROPOSAL_CHOSEN on both sides."""
    pair = Pair(
        config("gw@test", child_suites=(ChildSuite(EncryptionId.AES_GCM_16, 256, None),)),
        config(
            "client@test",
            child_suites=(ChildSuite(EncryptionId.AES_CBC, 128, IntegrityId.HMAC_SHA2_256_128),),
        ),
    )
    pair.establish()
    assert of(pair.gw_events, IkeSaEstablished) and of(pair.cl_events, IkeSaEstablished)
    for events in (pair.gw_events, pair.cl_events):
        (failed,) = of(events, ChildSaFailed)
        assert (
            isinstance(failed, ChildSaFailed)
            and failed.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
        )


def test_traffic_selectors_unacceptable() -> None:
    """Selectors outside the responder's policy: TS_UNACCEPTABLE, IKE SA still up."""
    pair = Pair(
        config("gw@test", remote_ts=(selector_from_network("10.0.0.0/8"),)),
        config("client@test", local_ts=(selector_from_network("192.168.0.0/16"),)),
    )
    pair.establish()
    (failed,) = of(pair.cl_events, ChildSaFailed)
    assert isinstance(failed, ChildSaFailed) and failed.notify_type == NotifyType.TS_UNACCEPTABLE
    assert of(pair.cl_events, IkeSaEstablished)


def test_traffic_selector_narrowing() -> None:
    """The responder narrows TSr to its local networks; the initiator accepts the subset."""
    pair = Pair(
        config("gw@test", local_ts=(selector_from_network("10.1.0.0/16"),)),
        config("client@test", remote_ts=(selector_from_network("10.0.0.0/8"),)),
    )
    pair.establish()
    (child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(child, ChildSaEstablished)
    assert child.child.ts_r == (selector_from_network("10.1.0.0/16"),)
    assert child.child.remote_ts == child.child.ts_r


def test_initiator_rejects_widened_selectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A responder answering selectors wider than offered makes the CHILD_SA fail."""
    pair = Pair(
        config("gw@test"),
        config("client@test", remote_ts=(selector_from_network("10.0.0.0/8"),)),
    )
    from twisted_rserpool.ike.tasks import child_create

    # The responder ignores what was offered and answers its whole policy ("any").
    monkeypatch.setattr(
        child_create, "narrow", lambda offered, allowed, limit=None: tuple(allowed[:1])
    )
    pair.establish()
    (failed,) = of(pair.cl_events, ChildSaFailed)
    assert isinstance(failed, ChildSaFailed) and "match" in failed.reason
    assert of(pair.cl_events, IkeSaEstablished)


def test_retransmitted_requests_answered_from_cache() -> None:
    """Lost responses: the initiator retransmits the same bytes after 2 s and the responder
    answers IKE_SA_INIT and IKE_AUTH from its cache, creating nothing twice."""
    pair = Pair()
    lost: list[bytes] = []

    def lose_first_responses(name: str, data: bytes) -> bytes | None:
        kind = exchange_of(data)
        if name == "gw" and kind not in [exchange_of(d) for d in lost]:
            lost.append(data)
            return None
        return data

    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, lose_first_responses)
    assert pair.cl.next_deadline() == 2.0
    pair.tick(2.0)
    pair.pump(2.0, lose_first_responses)
    assert len(lost) == 2
    assert pair.cl.next_deadline() == 4.0  # IKE_AUTH sent at 2.0, response lost
    pair.tick(4.0)
    pair.pump(4.0, lose_first_responses)
    assert len(of(pair.gw_events, IkeSaEstablished)) == 1
    assert len(of(pair.cl_events, IkeSaEstablished)) == 1
    gw_sent = [d for n, d in pair.sent if n == "gw"]
    assert gw_sent[0] == gw_sent[1] and gw_sent[2] == gw_sent[3]
    assert len(pair.gw) == 1


def test_retransmission_backoff_and_give_up() -> None:
    """Without answers the initiator retransmits at 2, 6, 14, 30 s and gives up at 62 s."""
    client = IkeEndpoint(config("client@test"), CL)
    spi = client.initiate(GW, 0.0)
    sent = [client.datagrams_to_send()]
    times = []
    events: list[IkeEvent] = []
    while (deadline := client.next_deadline()) is not None:
        times.append(deadline)
        events += client.handle_timer(deadline)
        sent.append(client.datagrams_to_send())
    assert times == [2.0, 6.0, 14.0, 30.0, 62.0]
    assert [len(s) for s in sent] == [1, 1, 1, 1, 1, 0]
    assert all(s[0] == sent[0][0] for s in sent[:5])
    (failed,) = of(events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and failed.reason == "no response from peer"
    assert client.get(spi) is None


def test_half_open_timeout() -> None:
    """A responder SA that never sees IKE_AUTH is dropped after the half-open timeout."""
    pair = Pair(config("gw@test", half_open_timeout=10.0))
    pair.cl.initiate(GW, 0.0)
    pair.pump(
        0.0, lambda name, data: None if exchange_of(data)[0] == ExchangeType.IKE_AUTH else data
    )
    assert pair.gw.half_open == 1 and pair.gw.next_deadline() == 10.0
    pair.gw_events += pair.gw.handle_timer(9.9)
    assert pair.gw.half_open == 1
    pair.gw_events += pair.gw.handle_timer(10.0)
    (failed,) = of(pair.gw_events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and failed.reason == "half-open timeout"
    assert pair.gw.half_open == 0 and len(pair.gw) == 0


def test_liveness_check_and_interval() -> None:
    """A liveness check is answered; with an interval, silence triggers one automatically."""
    pair = Pair(cl_config=config("client@test", liveness_interval=20.0))
    spi = pair.establish()
    assert pair.cl.next_deadline() == 20.0
    pair.cl.check_liveness(spi, 5.0)
    pair.pump(5.0)
    (alive,) = of(pair.cl_events, LivenessConfirmed)
    assert isinstance(alive, LivenessConfirmed) and alive.round_trip == 0.0
    assert pair.cl.next_deadline() == 25.0
    pair.tick(25.0)
    pair.pump(25.5)
    assert len(of(pair.cl_events, LivenessConfirmed)) == 2


def test_dead_peer_detected() -> None:
    """An established peer that stops answering is reported unreachable and removed."""
    pair = Pair()
    spi = pair.establish()
    pair.cl.check_liveness(spi, 1.0)
    pair.cl.datagrams_to_send()
    now = 1.0
    while (deadline := pair.cl.next_deadline()) is not None:
        now = deadline
        pair.cl_events += pair.cl.handle_timer(now)
        pair.cl.datagrams_to_send()
    (gone,) = of(pair.cl_events, IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "peer unreachable"
    assert now == 63.0 and not pair.cl_installer.installed


def test_message_id_window() -> None:
    """A request with a message ID beyond the window is dropped (never answered)."""
    pair = Pair()
    spi = pair.establish()
    sa = pair.cl.get(spi)
    assert sa is not None
    sa.window.allocate()  # skip one message ID
    pair.cl.check_liveness(spi, 1.0)
    pair.pump(1.0)
    assert not of(pair.cl_events, LivenessConfirmed)
    assert [n for n, _ in pair.sent[-1:]] == ["cl"]


def test_delete_ike_sa_both_ways() -> None:
    """DELETE of the IKE SA works from either side and removes CHILD_SAs from installers."""
    for deleter in ("cl", "gw"):
        pair = Pair()
        spi = pair.establish()
        assert pair.gw_installer.installed and pair.cl_installer.installed
        if deleter == "cl":
            pair.cl.delete_ike_sa(spi, 1.0)
        else:
            (gw_sa,) = list(pair.gw)
            pair.gw.delete_ike_sa(gw_sa.spi_r, 1.0)
        pair.pump(1.0)
        reasons = {
            "cl": [e.reason for e in of(pair.cl_events, IkeSaDeleted)],  # type: ignore[attr-defined]
            "gw": [e.reason for e in of(pair.gw_events, IkeSaDeleted)],  # type: ignore[attr-defined]
        }
        other = "gw" if deleter == "cl" else "cl"
        assert reasons[deleter] == ["deleted"] and reasons[other] == ["deleted by peer"]
        assert len(pair.gw) == len(pair.cl) == 0
        assert not pair.gw_installer.installed and not pair.cl_installer.installed


def test_delete_child_sa() -> None:
    """Deleting a CHILD_SA: the peer removes its half and answers with its own SPI."""
    pair = Pair()
    spi = pair.establish()
    (child,) = pair.cl_installer.installed
    assert pair.cl.delete_child_sa(spi, child, 1.0)
    assert not pair.cl.delete_child_sa(spi, child, 1.0)
    pair.pump(1.0)
    (gw_deleted,) = of(pair.gw_events, ChildSaDeleted)
    assert isinstance(gw_deleted, ChildSaDeleted) and gw_deleted.by_peer
    assert gw_deleted.child.outbound_spi == child
    assert not pair.gw_installer.installed and not pair.cl_installer.installed
    assert of(pair.cl_events, IkeSaEstablished) and not of(pair.cl_events, IkeSaDeleted)


def create_child_sa(
    pair: Pair, spi: bytes, payloads: tuple[Payload, ...], now: float = 1.0
) -> tuple[Payload, ...]:
    """Send a CREATE_CHILD_SA request from the client's IKE SA; the decrypted answer."""
    sa = pair.cl.get(spi)
    assert sa is not None
    forge(sa, ExchangeType.CREATE_CHILD_SA, payloads, now)
    pair.pump(now)
    answer = pair.sent[-1][1]
    message = decode_message(answer)
    assert message.response and message.exchange_type == ExchangeType.CREATE_CHILD_SA
    assert sa.cipher_in is not None and message.encrypted is not None
    return decode_payload_chain(message.encrypted.first_payload_type, sa.cipher_in.open(answer, 28))


def esp_offer(spi: bytes, *extra: OfferedTransform) -> SecurityAssociationPayload:
    (suite,) = parse_child_suites("aes128-sha256")
    proposal = OfferedProposal(1, 3, spi, suite.transforms() + extra)
    return SecurityAssociationPayload((to_payload(proposal),))


ANY_TS = (TsInitiatorPayload((any_selector(4),)), TsResponderPayload((any_selector(4),)))


def test_create_child_sa_errors() -> None:
    """CREATE_CHILD_SA without SA and Ni is INVALID_SYNTAX; rekeying an unknown CHILD_SA is
    CHILD_SA_NOT_FOUND; a KE group we lack is INVALID_KE_PAYLOAD; the IKE SA stays up."""
    pair = Pair()
    spi = pair.establish()
    (notify,) = create_child_sa(pair, spi, (NotifyPayload(NotifyType.REKEY_SA),))
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.INVALID_SYNTAX
    unknown = NotifyPayload(NotifyType.REKEY_SA, protocol_id=3, spi=b"nope")
    (notify,) = create_child_sa(
        pair, spi, (unknown, esp_offer(b"abcd"), NoncePayload(b"n" * 32), *ANY_TS)
    )
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.CHILD_SA_NOT_FOUND
    payloads: tuple[Payload, ...] = (
        esp_offer(b"abcd", OfferedTransform(4, 2)),
        NoncePayload(b"n" * 32),
        KeyExchangePayload(2, b"x" * 128),
        *ANY_TS,
    )
    (notify,) = create_child_sa(pair, spi, payloads)
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.INVALID_KE_PAYLOAD
    assert len(pair.gw_installer.installed) == 1 and not of(pair.gw_events, IkeSaDeleted)


def test_create_additional_child_sa() -> None:
    """A CREATE_CHILD_SA request without REKEY_SA adds a CHILD_SA whose KEYMAT is
    prf+(SK_d, Ni | Nr) with the exchange's nonces."""
    pair = Pair()
    spi = pair.establish()
    ni = b"i" * 32
    answer = create_child_sa(pair, spi, (esp_offer(b"wxyz"), NoncePayload(ni), *ANY_TS))
    kinds = [type(p).__name__ for p in answer]
    assert kinds == [
        "SecurityAssociationPayload",
        "NoncePayload",
        "TsInitiatorPayload",
        "TsResponderPayload",
    ]
    nr = answer[1].data  # type: ignore[union-attr]
    (child,) = [c for c in pair.gw_installer.installed.values() if c.outbound_spi == b"wxyz"]
    assert not child.initiator  # the client began this exchange
    sa = pair.cl.get(spi)
    assert sa is not None and sa.keys is not None
    keymat = sa.keys.prf.plus(sa.keys.sk_d, ni + nr, 2 * child.suite.keymat_length)
    assert child.encryption_key_i + child.integrity_key_i == keymat[: child.suite.keymat_length]
    assert len(pair.gw_installer.installed) == 2


def test_rekey_child_sa_with_pfs() -> None:
    """Rekeying a CHILD_SA with a KE payload (PFS): the new CHILD_SA's KEYMAT includes the
    new g^ir, and the old one goes when the peer deletes it."""
    pair = Pair()
    spi = pair.establish()
    (old_inbound,) = pair.cl_installer.installed  # the client's inbound SPI of the old SA
    key = DH_GROUPS[DhGroupId.CURVE25519].generate()
    ni = b"r" * 32
    payloads = (
        NotifyPayload(NotifyType.REKEY_SA, protocol_id=3, spi=old_inbound),
        esp_offer(b"new1", OfferedTransform(4, 31)),
        NoncePayload(ni),
        KeyExchangePayload(31, key.public_value),
        *ANY_TS,
    )
    answer = create_child_sa(pair, spi, payloads)
    ke = next(p for p in answer if isinstance(p, KeyExchangePayload))
    nr = next(p for p in answer if isinstance(p, NoncePayload)).data
    sa_answer = next(p for p in answer if isinstance(p, SecurityAssociationPayload))
    assert any(
        t.transform_type == 4 and t.transform_id == 31 for t in sa_answer.proposals[0].transforms
    )
    shared = key.shared_secret(ke.data)
    (child,) = [c for c in pair.gw_installer.installed.values() if c.outbound_spi == b"new1"]
    sa = pair.cl.get(spi)
    assert sa is not None and sa.keys is not None
    keymat = sa.keys.prf.plus(sa.keys.sk_d, shared + ni + nr, 2 * child.suite.keymat_length)
    assert child.encryption_key_r + child.integrity_key_r == keymat[child.suite.keymat_length :]
    assert len(pair.gw_installer.installed) == 2
    assert pair.cl.delete_child_sa(spi, old_inbound, 2.0)
    pair.pump(2.0)
    assert list(pair.gw_installer.installed.values()) == [child]


def test_rekey_ike_sa() -> None:
    """Rekeying the IKE SA: the gateway answers with a new SPI, Nr and KEr; the new SA's keys
    come from prf(SK_d (old), g^ir | Ni | Nr); it answers requests under the new keys, holds
    the CHILD_SAs, and the old SA's deletion is reported as "rekeyed"."""
    pair = Pair()
    spi = pair.establish()
    old = pair.cl.get(spi)
    assert old is not None and old.keys is not None
    (suite,) = parse_ike_suites("aes256gcm16-prfsha384-x25519")
    key = DH_GROUPS[suite.dh].generate()
    new_spi_i = b"N" * 8
    ni = b"k" * 32
    offer = OfferedProposal(1, 1, new_spi_i, suite.transforms())
    answer = create_child_sa(
        pair,
        spi,
        (
            SecurityAssociationPayload((to_payload(offer),)),
            NoncePayload(ni),
            KeyExchangePayload(suite.dh, key.public_value),
        ),
    )
    sa_answer, nonce, ke = answer
    assert isinstance(sa_answer, SecurityAssociationPayload) and isinstance(nonce, NoncePayload)
    assert isinstance(ke, KeyExchangePayload)
    new_spi_r = sa_answer.proposals[0].spi
    assert len(new_spi_r) == 8 and pair.gw.get(new_spi_r) is not None
    (rekeyed,) = of(pair.gw_events, IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed) and (rekeyed.spi_i, rekeyed.spi_r) == (
        new_spi_i,
        new_spi_r,
    )
    skeyseed = old.keys.prf(old.keys.sk_d, key.shared_secret(ke.data) + ni + nonce.data)
    keys = crypto.derive_ike_keys_from_skeyseed(
        suite.prf_transform,
        suite.encryption_transform,
        None,
        skeyseed=skeyseed,
        nonce_i=ni,
        nonce_r=nonce.data,
        spi_i=new_spi_i,
        spi_r=new_spi_r,
    )
    header = IkeHeader(new_spi_i, new_spi_r, 46, 2, 0, ExchangeType.INFORMATIONAL, 0x08, 0, 0)
    request = keys.cipher(True).seal(header.encode(), 0, b"")
    pair.gw.receive_datagram(request, CL, 2.0)
    ((response, _),) = pair.gw.datagrams_to_send()
    assert keys.cipher(False).open(response, 28) == b""
    new_gw_sa = pair.gw.get(new_spi_r)
    assert new_gw_sa is not None and len(new_gw_sa.children) == 1
    old.delete(3.0)
    pair.pump(3.0)
    reasons = [e.reason for e in of(pair.gw_events, IkeSaDeleted)]  # type: ignore[attr-defined]
    assert reasons == ["rekeyed"]
    assert len(pair.gw_installer.installed) == 1 and len(pair.gw) == 1


def test_tampered_message_dropped() -> None:
    """A protected message with a flipped bit fails its ICV check and is dropped silently."""
    pair = Pair()

    def flip(name: str, data: bytes) -> bytes | None:
        if name == "cl" and exchange_of(data)[0] == ExchangeType.IKE_AUTH:
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, flip)
    assert not pair.gw_events and pair.gw.half_open == 1
    assert pair.sent[-1][0] == "cl"


def test_malformed_ike_sa_init() -> None:
    """Malformed IKE_SA_INIT requests: garbage is dropped, a missing KE is INVALID_SYNTAX, an
    unknown critical payload is UNSUPPORTED_CRITICAL_PAYLOAD, version 3 is
    INVALID_MAJOR_VERSION; none of them creates state."""
    gw = IkeEndpoint(config("gw@test"), GW)
    client = IkeEndpoint(config("client@test"), CL)
    client.initiate(GW, 0.0)
    ((request, _),) = client.datagrams_to_send()
    message = decode_message(request)

    def answer(data: bytes) -> int | None:
        gw.receive_datagram(data, CL, 0.0)
        out = gw.datagrams_to_send()
        if not out:
            return None
        (notify,) = decode_message(out[0][0]).payloads
        assert isinstance(notify, NotifyPayload)
        return notify.notify_type

    assert answer(b"\x01" * 20) is None
    assert answer(request[:-3]) is None
    no_ke = dataclasses.replace(
        message,
        payloads=tuple(p for p in message.payloads if not isinstance(p, KeyExchangePayload)),
    )
    assert answer(no_ke.encode()) == NotifyType.INVALID_SYNTAX
    critical = dataclasses.replace(
        message, payloads=(*message.payloads, UnknownPayload(200, b"x", critical=True))
    )
    assert answer(critical.encode()) == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    v3 = request[:17] + b"\x30" + request[18:]
    assert answer(v3) == NotifyType.INVALID_MAJOR_VERSION
    bad_ke = dataclasses.replace(
        message,
        payloads=tuple(
            KeyExchangePayload(p.dh_group, p.data[:-1]) if isinstance(p, KeyExchangePayload) else p
            for p in message.payloads
        ),
    )
    assert answer(bad_ke.encode()) == NotifyType.INVALID_SYNTAX
    assert len(gw) == 0 and gw.half_open == 0


def test_invalid_ke_value_fails_at_ike_auth() -> None:
    """The responder computes g^ir only when IKE_AUTH arrives: an all-zero X25519 value
    passes IKE_SA_INIT (one key pair spent) and then fails the half-open SA."""
    pair = Pair(
        cl_config=config("client@test", ike_suites=parse_ike_suites("aes128-sha256-x25519"))
    )

    def zero_ke(name: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if name == "cl" and message.exchange_type == ExchangeType.IKE_SA_INIT:
            payloads = tuple(
                KeyExchangePayload(p.dh_group, bytes(32))
                if isinstance(p, KeyExchangePayload)
                else p
                for p in message.payloads
            )
            return dataclasses.replace(message, payloads=payloads).encode()
        return data

    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, zero_ke)
    (failed,) = of(pair.gw_events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed) and "KE data is invalid" in failed.reason
    assert len(pair.gw) == 0 and pair.gw.half_open == 0
    assert not of(pair.cl_events, IkeSaEstablished)


def test_unknown_spi_and_wrong_address_dropped() -> None:
    """Messages for unknown SPIs are dropped; a tampered one from another address than the
    SA's peer is dropped and does not move the SA (tests/ike/test_nat.py has the rest)."""
    pair = Pair()
    pair.establish()
    last = [d for n, d in pair.sent if n == "cl"][-1]
    pair.gw.receive_datagram(last[:8] + b"\x99" * 8 + last[16:], CL, 1.0)
    pair.gw.receive_datagram(last[:-1] + bytes([last[-1] ^ 1]), ("127.0.0.9", 500), 1.0)
    assert pair.gw.datagrams_to_send() == []
    assert pair.gw.counters["dropped"] == 1
    assert [sa.peer_address for sa in pair.gw] == [CL]


def test_non_esp_marker_on_other_ports() -> None:
    """Between two non-500 ports every IKE message carries the four zero octets; NAT
    keepalives and ESP packets are ignored."""
    pair = Pair(gw_address=("127.0.0.2", 4500), cl_address=("127.0.0.1", 14500))
    pair.establish()
    assert all(d.startswith(b"\x00\x00\x00\x00") for _, d in pair.sent)
    assert of(pair.cl_events, IkeSaEstablished)
    assert pair.gw.receive_datagram(b"\xff", ("127.0.0.1", 14500), 1.0) == []
    pair.gw.receive_datagram(b"\x01\x02\x03\x04" + b"\x00" * 40, ("127.0.0.1", 14500), 1.0)
    assert pair.gw.datagrams_to_send() == [] and pair.gw.counters["dropped"] == 1


def test_nat_detected() -> None:
    """NAT detection hashes that do not match the addresses seen reveal a NAT."""
    pair = Pair()
    pair.cl.local_address = ("10.0.0.1", 500)  # the client's own address, behind a NAT
    pair.cl.initiate(GW, 0.0)
    pair.cl.local_address = CL  # the address the gateway sees
    pair.pump(0.0)
    (gw_up,) = of(pair.gw_events, IkeSaEstablished)
    (cl_up,) = of(pair.cl_events, IkeSaEstablished)
    assert isinstance(gw_up, IkeSaEstablished) and gw_up.peer_behind_nat
    assert isinstance(cl_up, IkeSaEstablished) and cl_up.local_behind_nat


def test_sa_limit() -> None:
    """Beyond max_ike_sas, IKE_SA_INIT requests are dropped before any work."""
    gw = IkeEndpoint(config("gw@test", max_ike_sas=1), GW)
    for host in ("127.0.0.5", "127.0.0.6"):
        client = IkeEndpoint(config("client@test"), (host, 500))
        client.initiate(GW, 0.0)
        ((request, _),) = client.datagrams_to_send()
        gw.receive_datagram(request, (host, 500), 0.0)
    assert len(gw) == 1 and len(gw.datagrams_to_send()) == 1


def test_timer_heap_many_sas() -> None:
    """The endpoint's timer is the earliest deadline over many SAs, and stays consistent as
    SAs come and go."""
    client = IkeEndpoint(
        config("client@test", ike_suites=parse_ike_suites("aes128-sha256-x25519")), CL
    )
    spis = [client.initiate(GW, float(i)) for i in range(50)]
    assert client.next_deadline() == 2.0
    client.delete_ike_sa(spis[0], 0.5)
    (aborted,) = client.events()
    assert isinstance(aborted, IkeSaFailed) and aborted.reason == "aborted"
    assert client.next_deadline() == 3.0
    events = client.handle_timer(10.0)
    assert events == [] and client.next_deadline() == 11.0
    assert len(client) == 49


def test_state_names() -> None:
    """A fresh responder SA is INIT_DONE and counted as half-open until IKE_AUTH."""
    pair = Pair()
    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, lambda n, d: None if exchange_of(d)[0] == ExchangeType.IKE_AUTH else d)
    (sa,) = list(pair.gw)
    assert sa.state == State.INIT_DONE and not sa.established


def test_initial_contact_optional() -> None:
    """N(INITIAL_CONTACT) is sent in IKE_AUTH unless the configuration turns it off."""
    for wanted in (True, False):
        pair = Pair(cl_config=config("client@test", initial_contact=wanted))
        spi = pair.establish()
        sa = pair.cl.get(spi)
        assert sa is not None and sa.cipher_out is not None
        auth = next(
            d for n, d in pair.sent if n == "cl" and exchange_of(d)[0] == ExchangeType.IKE_AUTH
        )
        gw_sa = pair.gw.get(decode_message(auth).spi_r)
        assert gw_sa is not None and gw_sa.cipher_in is not None
        message = decode_message(auth)
        assert message.encrypted is not None
        inner = decode_payload_chain(
            message.encrypted.first_payload_type, gw_sa.cipher_in.open(auth, 28)
        )
        notifies = {p.notify_type for p in inner if isinstance(p, NotifyPayload)}
        assert (NotifyType.INITIAL_CONTACT in notifies) is wanted


def _rekeyed(events: list[IkeEvent]) -> IkeSaRekeyed:
    (event,) = of(events, IkeSaRekeyed)
    assert isinstance(event, IkeSaRekeyed)
    return event


def test_initiator_rekeys_ike_sa() -> None:
    """Our rekey of the IKE SA: both sides make the same new SA with the CHILD_SAs, the old
    SA is deleted as "rekeyed" on both, and the new SA carries liveness checks and Delete."""
    pair = Pair()
    spi = pair.establish()
    assert pair.cl.rekey_ike_sa(spi, 1.0)
    assert not pair.cl.rekey_ike_sa(spi, 1.0)  # one at a time
    pair.pump(1.0)
    cl_event, gw_event = _rekeyed(pair.cl_events), _rekeyed(pair.gw_events)
    assert (cl_event.spi_i, cl_event.spi_r) == (gw_event.spi_i, gw_event.spi_r)
    assert not cl_event.by_peer and gw_event.by_peer
    assert cl_event.old_spi_i == spi and cl_event.spi_i != spi
    for events in (pair.cl_events, pair.gw_events):
        assert [e.reason for e in of(events, IkeSaDeleted)] == ["rekeyed"]  # type: ignore[attr-defined]
    assert len(pair.cl) == len(pair.gw) == 1
    new_cl, new_gw = pair.cl.get(cl_event.spi_i), pair.gw.get(gw_event.spi_r)
    assert new_cl is not None and new_gw is not None
    assert len(new_cl.children) == len(new_gw.children) == 1
    assert len(pair.cl_installer.installed) == len(pair.gw_installer.installed) == 1
    assert new_cl.keys is not None and new_gw.keys is not None
    assert new_cl.keys.sk_d == new_gw.keys.sk_d
    pair.cl.check_liveness(cl_event.spi_i, 2.0)
    pair.pump(2.0)
    assert of(pair.cl_events, LivenessConfirmed)
    pair.gw.delete_ike_sa(gw_event.spi_r, 3.0)
    pair.pump(3.0)
    assert len(pair.cl) == len(pair.gw) == 0 and not pair.cl_installer.installed


def test_responder_rekeys_ike_sa() -> None:
    """The gateway may rekey too: it becomes the initiator of the new IKE SA and the client
    its responder; the client then reaches the gateway over the new SA."""
    pair = Pair()
    pair.establish()
    (gw_sa,) = list(pair.gw)
    assert pair.gw.rekey_ike_sa(gw_sa.spi_r, 1.0)
    pair.pump(1.0)
    event = _rekeyed(pair.gw_events)
    new_gw, new_cl = pair.gw.get(event.spi_i), pair.cl.get(event.spi_r)
    assert new_gw is not None and new_gw.initiator
    assert new_cl is not None and not new_cl.initiator
    pair.cl.check_liveness(event.spi_r, 2.0)
    pair.pump(2.0)
    assert of(pair.cl_events, LivenessConfirmed) and len(pair.gw) == 1


def test_rekey_invalid_ke_retry() -> None:
    """A peer answering our rekey with INVALID_KE_PAYLOAD gets a retry with its group."""
    pair = Pair()
    spi = pair.establish()
    (gw_sa,) = list(pair.gw)
    gw_sa.config = config("gw@test", ike_suites=parse_ike_suites("aes128gcm16-prfsha256-ecp256"))
    pair.cl.rekey_ike_sa(spi, 1.0)
    pair.pump(1.0)
    event = _rekeyed(pair.cl_events)
    assert str(event.suite) == "aes128gcm16-prfsha256-ecp256"
    assert gw_sa.cipher_in is not None
    kes = []
    for sender, data in pair.sent:
        message = decode_message(data)
        if sender == "cl" and message.exchange_type == ExchangeType.CREATE_CHILD_SA:
            assert message.encrypted is not None
            inner = decode_payload_chain(
                message.encrypted.first_payload_type, gw_sa.cipher_in.open(data, 28)
            )
            kes += [p.dh_group for p in inner if isinstance(p, KeyExchangePayload)]
    assert kes == [config("client@test").offered_ike_suites[0].dh, DhGroupId.ECP_256]


def test_rekey_interval_and_refusal() -> None:
    """With rekey_interval the IKE SA rekeys itself when due; a refused rekey keeps the SA
    and tries again a tenth of the interval later."""
    suites = parse_ike_suites("aes128-sha256-x25519")
    # No liveness checks here: they would be due first and move the timers.
    pair = Pair(
        config("gw@test", liveness_interval=None),
        config("client@test", rekey_interval=100.0, ike_suites=suites, liveness_interval=None),
    )
    spi = pair.establish()
    assert pair.cl.next_deadline() == 100.0
    (gw_sa,) = list(pair.gw)
    gw_sa.config = config(
        "gw@test", ike_suites=parse_ike_suites("aes256-sha512-ecp384"), liveness_interval=None
    )
    pair.tick(100.0)
    pair.pump(100.0)
    assert not of(pair.cl_events, IkeSaRekeyed) and pair.cl.get(spi) is not None
    assert pair.cl.next_deadline() == 110.0
    gw_sa.config = pair.gw.config
    pair.tick(110.0)
    pair.pump(110.0)
    event = _rekeyed(pair.cl_events)
    assert pair.cl.get(spi) is None and pair.cl.next_deadline() == 210.0
    assert pair.cl.get(event.spi_i) is not None
