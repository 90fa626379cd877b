"""The codec is one package (twisted_rserpool.ike.codec); ike.payloads re-exports it, and
the stateless IKE_SA_INIT redirect in it agrees with the full codec."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.ike.strategies import gateways, plain_payloads, proposals
from twisted_rserpool.ike import codec, payloads
from twisted_rserpool.ike.codec import (
    CertificateRequestPayload,
    GatewayIdentity,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SecurityAssociationPayload,
    VendorIdPayload,
    decode_message,
    init_redirect_response,
    redirect_notify,
    scan_init_for_redirect,
)
from twisted_rserpool.ike.constants import ExchangeType, NotifyType

MODULES = [
    "base",
    "header",
    "security_association",
    "key_exchange",
    "identity",
    "notify",
    "traffic_selectors",
    "configuration",
    "encrypted",
    "fragment",
    "chain",
    "message",
    "redirect",
    "framing",
]


def test_payloads_is_the_codec() -> None:
    assert set(payloads.__all__) == set(codec.__all__)
    for name in codec.__all__:
        assert getattr(payloads, name) is getattr(codec, name)


@pytest.mark.parametrize("name", MODULES)
def test_every_family_exported(name: str) -> None:
    module = importlib.import_module(f"twisted_rserpool.ike.codec.{name}")
    for exported in module.__all__:
        if exported != "IPAddress":  # a type alias of the selectors module only
            assert getattr(codec, exported) is getattr(module, exported)


def test_one_redirect_codec() -> None:
    """The endpoint's stateless IKE_SA_INIT redirect comes from the codec package."""
    from twisted_rserpool.ike import endpoint

    names = vars(endpoint)
    assert names["init_redirect_response"] is codec.init_redirect_response
    assert names["scan_init_for_redirect"] is codec.scan_init_for_redirect
    assert "_scan_for_redirect" not in names


@settings(max_examples=200, deadline=None)
@given(
    spi=st.binary(min_size=8, max_size=8),
    gateway=gateways,
    nonce=st.binary(min_size=16, max_size=256),
)
def test_init_redirect_response_is_the_codecs_encoding(
    spi: bytes, gateway: GatewayIdentity, nonce: bytes
) -> None:
    """HDR(SPIi, 0), N(REDIRECT, gateway, Ni) built directly equals the encoded message."""
    expected = IkeMessage(
        spi,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0,
        (redirect_notify(gateway, nonce),),
        initiator=False,
        response=True,
    ).encode()
    assert init_redirect_response(spi, gateway, nonce) == expected
    assert decode_message(expected).notify(NotifyType.REDIRECT) is not None


_SCANNED = (
    SecurityAssociationPayload,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    VendorIdPayload,
    CertificateRequestPayload,
)


@st.composite
def _first_contacts(draw: st.DrawFn) -> list[Payload]:
    """IKE_SA_INIT chains near a plain first contact: each needed payload present most of
    the time, a few others (COOKIE, REDIRECTED_FROM, any payload) now and then, any order."""
    chain: list[Payload] = []
    needed: list[st.SearchStrategy[Payload]] = [
        st.lists(proposals, min_size=1, max_size=3).map(
            lambda ps: SecurityAssociationPayload(tuple(ps))
        ),
        st.builds(KeyExchangePayload, st.integers(0, 0xFFFF), st.binary(max_size=40)),
        st.builds(NoncePayload, st.binary(min_size=12, max_size=40)),
        st.just(NotifyPayload(NotifyType.REDIRECT_SUPPORTED)),
    ]
    for strategy in needed:
        if draw(st.integers(0, 9)) < 8:
            chain.append(draw(strategy))
    others = st.one_of(
        plain_payloads,
        st.sampled_from([NotifyType.COOKIE, NotifyType.REDIRECTED_FROM]).map(NotifyPayload),
    )
    chain += draw(st.lists(others, max_size=2))
    return list(draw(st.permutations(chain)))


def _reference(message: IkeMessage) -> bytes | None:
    """What the scan must say, from the full decoding."""
    payloads = message.payloads
    if not all(isinstance(p, _SCANNED) for p in payloads):
        return None
    kinds = {type(p) for p in payloads}
    notify_types = {p.notify_type for p in payloads if isinstance(p, NotifyPayload)}
    nonces = [p.data for p in payloads if isinstance(p, NoncePayload)]
    if not {SecurityAssociationPayload, KeyExchangePayload, NoncePayload} <= kinds:
        return None
    if NotifyType.REDIRECT_SUPPORTED not in notify_types:
        return None
    if notify_types & {NotifyType.COOKIE, NotifyType.REDIRECTED_FROM}:
        return None
    return nonces[-1] if 16 <= len(nonces[-1]) <= 256 else None


@settings(max_examples=300, deadline=None)
@given(chain=_first_contacts(), spi=st.binary(min_size=8, max_size=8))
def test_scan_agrees_with_the_full_decoder(chain: list[Payload], spi: bytes) -> None:
    """The redirector's header walk returns Ni exactly when the decoded request is a plain
    first contact (SA, KE, Ni, REDIRECT_SUPPORTED; no COOKIE or REDIRECTED_FROM; only the
    payload types it knows)."""
    data = IkeMessage(spi, bytes(8), ExchangeType.IKE_SA_INIT, 0, tuple(chain)).encode()
    expected = _reference(decode_message(data))
    event("scan finds Ni" if expected is not None else "scan declines")
    assert scan_init_for_redirect(data) == expected
