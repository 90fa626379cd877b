"""Error paths that need a misbehaving peer: the gateway's answers are rewritten in flight
(protected ones decrypted and re-sealed with the gateway's own keys) before the client sees
them, and requests the client never sends on its own are forged."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tests.ike.test_sa import CL, GW, Pair, config, exchange_of, forge, of
from twisted_rserpool.ike.child import any_selector
from twisted_rserpool.ike.config import PskTable
from twisted_rserpool.ike.constants import AuthMethod, ExchangeType, NotifyType
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaRekeyed,
    LivenessConfirmed,
)
from twisted_rserpool.ike.payloads import (
    AuthenticationPayload,
    IdResponderPayload,
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
    encode_payload_chain,
)
from twisted_rserpool.ike.proposals import OfferedProposal, parse_child_suites, parse_ike_suites
from twisted_rserpool.ike.sa import IkeSa, to_payload

Rewrite = Callable[[list[Payload]], list[Payload]]


def rewrite_init(change: Rewrite) -> Callable[[str, bytes], bytes | None]:
    """A pump filter that rewrites the gateway's IKE_SA_INIT responses."""

    def filter_(name: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if name == "gw" and message.exchange_type == ExchangeType.IKE_SA_INIT:
            payloads = tuple(change(list(message.payloads)))
            return dataclasses.replace(message, payloads=payloads).encode()
        return data

    return filter_


def rewrite_protected(
    pair: Pair, exchange: int, change: Rewrite
) -> Callable[[str, bytes], bytes | None]:
    """A pump filter that rewrites the gateway's protected responses of one exchange."""

    def filter_(name: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if name != "gw" or message.exchange_type != exchange or not message.response:
            return data
        sa = pair.gw.get(message.spi_r)
        assert sa is not None and sa.keys is not None and message.encrypted is not None
        cipher = sa.keys.cipher(False)
        inner = decode_payload_chain(message.encrypted.first_payload_type, cipher.open(data, 28))
        first, chain = encode_payload_chain(change(list(inner)))
        header = IkeHeader(
            message.spi_i, message.spi_r, 46, 2, 0, exchange, 0x20, message.message_id, 0
        )
        return cipher.seal(header.encode(), first, chain)

    return filter_


def replace(kind: type[Payload], new: Payload | None) -> Rewrite:
    def change(payloads: list[Payload]) -> list[Payload]:
        out = [new if isinstance(p, kind) else p for p in payloads]
        return [p for p in out if p is not None]

    return change


def failure(events: list[IkeEvent]) -> IkeSaFailed:
    (failed,) = of(events, IkeSaFailed)
    assert isinstance(failed, IkeSaFailed)
    return failed


X25519 = parse_ike_suites("aes128-sha256-x25519")


@pytest.mark.parametrize(
    "change,reason",
    [
        (replace(KeyExchangePayload, None), "lacks SA, KE or Nr"),
        (
            replace(
                SecurityAssociationPayload,
                SecurityAssociationPayload(
                    (
                        to_payload(
                            OfferedProposal(
                                1, 1, b"", parse_ike_suites("aes256-sha512-x25519")[0].transforms()
                            )
                        ),
                    )
                ),
            ),
            "did not offer",
        ),
        (replace(KeyExchangePayload, KeyExchangePayload(31, bytes(32))), "KE data is invalid"),
        (replace(NoncePayload, NoncePayload(b"short")), "nonce has a bad length"),
        (lambda p: [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)], "NO_PROPOSAL_CHOSEN"),
    ],
)
def test_bad_ike_sa_init_responses(change: Rewrite, reason: str) -> None:
    """The initiator refuses IKE_SA_INIT responses that lack payloads, pick what it did not
    offer, carry bad KE data or nonces, or carry error notifies (redirects: test_redirect)."""
    pair = Pair(cl_config=config("client@test", ike_suites=X25519))
    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, rewrite_init(change))
    assert reason in failure(pair.cl_events).reason
    assert len(pair.cl) == 0 and not of(pair.cl_events, IkeSaEstablished)


def test_zero_responder_spi_refused() -> None:
    """An IKE_SA_INIT response with SA, KE and Nr but a zero SPIr is refused."""
    pair = Pair(cl_config=config("client@test", ike_suites=X25519))
    pair.cl.initiate(GW, 0.0)

    def zero_spi(name: str, data: bytes) -> bytes | None:
        if name == "gw":
            return data[:8] + bytes(8) + data[16:]
        return data

    pair.pump(0.0, zero_spi)
    assert "SPI is wrong" in failure(pair.cl_events).reason


def test_endless_cookies_give_up() -> None:
    """A responder that keeps asking for new cookies is given up on after four tries."""
    pair = Pair(cl_config=config("client@test", ike_suites=X25519))
    pair.cl.initiate(GW, 0.0)
    counter = iter(range(100))

    def cookies(name: str, data: bytes) -> bytes | None:
        if name == "cl":
            message = decode_message(data)
            answer = IkeMessage(
                message.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, 0,
                (NotifyPayload(NotifyType.COOKIE, next(counter).to_bytes(4, "big") * 4),),
                response=True,
            )  # fmt: skip
            pair.cl_events.extend(pair.cl.receive_datagram(answer.encode(), GW, 0.0))
            return None
        return data

    pair.pump(0.0, cookies)
    failed = failure(pair.cl_events)
    assert failed.notify_type == NotifyType.COOKIE and next(counter) == 4


@pytest.mark.parametrize(
    "change,reason,notify",
    [
        (replace(IdResponderPayload, None), "lacks IDr/AUTH", NotifyType.INVALID_SYNTAX),
        (
            replace(
                AuthenticationPayload, AuthenticationPayload(AuthMethod.SHARED_KEY_MIC, b"x" * 32)
            ),
            "AUTH of gw@test is wrong",
            NotifyType.AUTHENTICATION_FAILED,
        ),
        (
            replace(
                AuthenticationPayload, AuthenticationPayload(AuthMethod.RSA_DIGITAL_SIGNATURE, b"x")
            ),
            "cannot verify AUTH method",
            NotifyType.AUTHENTICATION_FAILED,
        ),
    ],
)
def test_bad_ike_auth_responses(change: Rewrite, reason: str, notify: int | None) -> None:
    """The initiator refuses IKE_AUTH responses without IDr, with a wrong AUTH value, or
    with an authentication method other than the pre-shared key."""
    pair = Pair()
    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, rewrite_protected(pair, ExchangeType.IKE_AUTH, change))
    failed = failure(pair.cl_events)
    assert reason in failed.reason and failed.notify_type == notify
    assert of(pair.gw_events, IkeSaEstablished) and not of(pair.cl_events, IkeSaEstablished)


@pytest.mark.parametrize(
    "change,reason",
    [
        (replace(SecurityAssociationPayload, None), "no CHILD_SA in the response"),
        (
            replace(
                SecurityAssociationPayload,
                SecurityAssociationPayload(
                    (
                        to_payload(
                            OfferedProposal(
                                1, 3, b"abcd", parse_child_suites("aes256gcm16")[0].transforms()
                            )
                        ),
                    )
                ),
            ),
            "does not match our offer",
        ),
        (replace(TsInitiatorPayload, TsInitiatorPayload(())), "does not match our offer"),
    ],
)
def test_bad_child_sa_in_ike_auth_response(change: Rewrite, reason: str) -> None:
    """A CHILD_SA answer without SA, with a suite the initiator did not offer, or with empty
    selectors fails the CHILD_SA and keeps the IKE SA."""
    pair = Pair(cl_config=config("client@test", child_suites=parse_child_suites("aes128-sha256")))
    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0, rewrite_protected(pair, ExchangeType.IKE_AUTH, change))
    (failed,) = of(pair.cl_events, ChildSaFailed)
    assert isinstance(failed, ChildSaFailed) and reason in failed.reason
    assert of(pair.cl_events, IkeSaEstablished) and not pair.cl_installer.installed


def test_transport_mode_answer() -> None:
    """USE_TRANSPORT_MODE in the answer makes a transport-mode CHILD_SA."""
    pair = Pair()
    pair.cl.initiate(GW, 0.0)

    def add(payloads: list[Payload]) -> list[Payload]:
        return [NotifyPayload(NotifyType.USE_TRANSPORT_MODE), *payloads]

    pair.pump(0.0, rewrite_protected(pair, ExchangeType.IKE_AUTH, add))
    (child,) = of(pair.cl_events, ChildSaEstablished)
    assert isinstance(child, ChildSaEstablished) and child.child.transport_mode


def _rekey_with(pair: Pair, spi: bytes, change: Rewrite) -> None:
    pair.cl.rekey_ike_sa(spi, 1.0)
    pair.pump(1.0, rewrite_protected(pair, ExchangeType.CREATE_CHILD_SA, change))


@pytest.mark.parametrize(
    "change",
    [
        replace(KeyExchangePayload, None),
        replace(NoncePayload, NoncePayload(b"tiny")),
        replace(KeyExchangePayload, KeyExchangePayload(31, bytes(32))),
        lambda p: [NotifyPayload(NotifyType.TEMPORARY_FAILURE)],
    ],
)
def test_bad_rekey_answers_keep_the_sa(change: Rewrite) -> None:
    """A rekey answer without KEr, with a short nonce, invalid KE data or an error notify
    leaves the old IKE SA in service (a liveness check still works)."""
    pair = Pair(config("gw@test", ike_suites=X25519), config("client@test", ike_suites=X25519))
    spi = pair.establish()
    _rekey_with(pair, spi, change)
    assert not of(pair.cl_events, IkeSaRekeyed)
    pair.cl.check_liveness(spi, 2.0)
    pair.pump(2.0)
    assert of(pair.cl_events, LivenessConfirmed)


def test_queued_requests_and_malformed_protected_request() -> None:
    """Requests wait for the window: two liveness checks both complete; a protected request
    whose inner payloads hold an unknown critical payload is answered with
    UNSUPPORTED_CRITICAL_PAYLOAD naming it."""
    pair = Pair()
    spi = pair.establish()
    pair.cl.check_liveness(spi, 1.0)
    pair.cl.check_liveness(spi, 1.0)
    assert len(pair.cl.datagrams_to_send()) == 1
    pair.cl.handle_timer(3.0)  # retransmit the first; the second still waits
    pair.pump(3.0)
    assert len(of(pair.cl_events, LivenessConfirmed)) == 2
    sa = pair.cl.get(spi)
    assert sa is not None and sa.cipher_in is not None
    forge(sa, ExchangeType.INFORMATIONAL, (UnknownPayload(200, b"?", critical=True),), 4.0)
    pair.pump(4.0)
    answer = pair.sent[-1][1]
    message = decode_message(answer)
    assert message.encrypted is not None
    (notify,) = decode_payload_chain(
        message.encrypted.first_payload_type, sa.cipher_in.open(answer, 28)
    )
    assert isinstance(notify, NotifyPayload)
    assert notify.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and notify.data == b"\xc8"


def test_create_child_sa_while_deleting() -> None:
    """A CREATE_CHILD_SA request reaching an IKE SA that is being deleted is answered
    TEMPORARY_FAILURE."""
    pair = Pair()
    spi = pair.establish()
    (gw_sa,) = list(pair.gw)
    pair.gw.delete_ike_sa(gw_sa.spi_r, 1.0)
    pair.gw.datagrams_to_send()  # the Delete is lost
    sa = pair.cl.get(spi)
    assert isinstance(sa, IkeSa) and sa.cipher_in is not None
    forge(sa, ExchangeType.CREATE_CHILD_SA, (NotifyPayload(NotifyType.REKEY_SA),), 1.0)
    ((request, _),) = pair.cl.datagrams_to_send()
    pair.gw.receive_datagram(request, CL, 1.0)
    ((answer, _),) = pair.gw.datagrams_to_send()
    message = decode_message(answer)
    assert message.encrypted is not None
    (notify,) = decode_payload_chain(
        message.encrypted.first_payload_type, sa.cipher_in.open(answer, 28)
    )
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.TEMPORARY_FAILURE
    assert exchange_of(answer) == (ExchangeType.CREATE_CHILD_SA, True)


def test_initiator_without_key() -> None:
    """An initiator with no pre-shared key for the responder fails before IKE_AUTH."""
    pair = Pair(cl_config=config("client@test", psks=PskTable()))
    pair.cl.initiate(GW, 0.0)
    pair.pump(0.0)
    assert failure(pair.cl_events).reason == "no pre-shared key for the responder"
    assert [exchange_of(d)[0] for _, d in pair.sent] == [ExchangeType.IKE_SA_INIT] * 2


def _answer(pair: Pair, spi: bytes, exchange: int, payloads: tuple[Payload, ...]) -> list[Payload]:
    sa = pair.cl.get(spi)
    assert sa is not None and sa.cipher_in is not None
    forge(sa, exchange, payloads, 1.0)
    pair.pump(1.0)
    answer = pair.sent[-1][1]
    message = decode_message(answer)
    assert message.encrypted is not None and message.response
    return list(
        decode_payload_chain(message.encrypted.first_payload_type, sa.cipher_in.open(answer, 28))
    )


def test_forged_requests() -> None:
    """CREATE_CHILD_SA without selectors is INVALID_SYNTAX; one asking for transport mode
    gets a transport-mode CHILD_SA and USE_TRANSPORT_MODE back; an exchange type the
    gateway does not know is answered INVALID_SYNTAX."""
    pair = Pair()
    spi = pair.establish()
    esp = SecurityAssociationPayload(
        (
            to_payload(
                OfferedProposal(1, 3, b"tpt1", parse_child_suites("aes128gcm16")[0].transforms())
            ),
        )
    )
    (notify,) = _answer(pair, spi, ExchangeType.CREATE_CHILD_SA, (esp, NoncePayload(b"n" * 32)))
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.INVALID_SYNTAX
    selectors = (TsInitiatorPayload((any_selector(4),)), TsResponderPayload((any_selector(4),)))
    answer = _answer(
        pair,
        spi,
        ExchangeType.CREATE_CHILD_SA,
        (NotifyPayload(NotifyType.USE_TRANSPORT_MODE), esp, NoncePayload(b"n" * 32), *selectors),
    )
    assert isinstance(answer[0], NotifyPayload)
    assert answer[0].notify_type == NotifyType.USE_TRANSPORT_MODE
    (child,) = [c for c in pair.gw_installer.installed.values() if c.outbound_spi == b"tpt1"]
    assert child.transport_mode
    (notify,) = _answer(pair, spi, ExchangeType.IKE_INTERMEDIATE, ())
    assert isinstance(notify, NotifyPayload) and notify.notify_type == NotifyType.INVALID_SYNTAX
