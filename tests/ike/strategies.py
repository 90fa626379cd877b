"""Hypothesis strategies that build valid IKEv2 payloads and messages."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from twisted_rserpool.ike.constants import (
    ExchangeType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformType,
)
from twisted_rserpool.ike.payloads import (
    AuthenticationPayload,
    CertificatePayload,
    CertificateRequestPayload,
    ConfigurationAttribute,
    ConfigurationPayload,
    DeletePayload,
    EapPayload,
    EncryptedFragmentPayload,
    EncryptedPayload,
    IdInitiatorPayload,
    IdResponderPayload,
    IkeMessage,
    KeyExchangePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    RedirectData,
    SecurityAssociationPayload,
    TrafficSelector,
    Transform,
    TransformAttribute,
    TsInitiatorPayload,
    TsResponderPayload,
    UnknownPayload,
    UnknownTrafficSelector,
    VendorIdPayload,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=48)
critical = st.booleans()

_KNOWN_TYPES = {int(t) for t in PayloadType if 33 <= t <= 48} | {int(PayloadType.SKF)}
unknown_payload_types = st.integers(1, 255).filter(lambda t: t not in _KNOWN_TYPES)

transform_attributes = st.one_of(
    st.builds(TransformAttribute, st.integers(0, 0x7FFF), u16),
    st.builds(TransformAttribute, st.integers(0, 0x7FFF), st.binary(max_size=12)),
)

transforms = st.builds(
    Transform,
    st.one_of(st.sampled_from(list(TransformType)), u8),
    u16,
    st.lists(transform_attributes, max_size=3).map(tuple),
)

proposals = st.builds(
    Proposal,
    st.integers(1, 255),
    st.one_of(st.sampled_from(list(ProtocolId)), u8),
    st.sampled_from([b"", b"\x01\x02\x03\x04", b"12345678"]),
    st.lists(transforms, max_size=6).map(tuple),
)

ipv4 = st.builds(IPv4Address, u32)
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))

traffic_selectors = st.one_of(
    st.builds(TrafficSelector, ipv4, ipv4, u8, u16, u16),
    st.builds(TrafficSelector, ipv6, ipv6, u8, u16, u16),
    st.builds(
        UnknownTrafficSelector,
        u8.filter(lambda t: t not in (7, 8)),
        u8,
        st.binary(max_size=20),
    ),
)

config_attributes = st.builds(
    ConfigurationAttribute, st.integers(0, 0x7FFF), st.binary(max_size=20)
)

notify_types = st.one_of(st.sampled_from(list(NotifyType)), u16)

gateways = st.one_of(
    ipv4,
    ipv6,
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        min_size=1,
        max_size=60,
    ),
)

redirect_data = st.builds(RedirectData, gateways, st.binary(max_size=64))


@st.composite
def delete_payloads(draw: st.DrawFn) -> DeletePayload:
    """A Delete payload with SPIs of one size."""
    size = draw(st.sampled_from([0, 4, 8]))
    count = 0 if size == 0 else draw(st.integers(0, 5))
    spis = tuple(draw(st.binary(min_size=size, max_size=size)) for _ in range(count))
    return DeletePayload(draw(u8), spis, size, draw(critical))


plain_payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(
        SecurityAssociationPayload, st.lists(proposals, min_size=1, max_size=4).map(tuple), critical
    ),
    st.builds(KeyExchangePayload, u16, small_bytes, critical),
    st.builds(IdInitiatorPayload, u8, small_bytes, critical),
    st.builds(IdResponderPayload, u8, small_bytes, critical),
    st.builds(CertificatePayload, u8, small_bytes, critical),
    st.builds(CertificateRequestPayload, u8, small_bytes, critical),
    st.builds(AuthenticationPayload, u8, small_bytes, critical),
    st.builds(NoncePayload, small_bytes, critical),
    st.builds(
        NotifyPayload,
        notify_types,
        small_bytes,
        u8,
        st.sampled_from([b"", b"\x00\x00\x00\x01", b"abcdefgh"]),
        critical,
    ),
    st.builds(NotifyPayload, st.just(NotifyType.REDIRECT), redirect_data.map(RedirectData.encode)),
    delete_payloads(),
    st.builds(VendorIdPayload, small_bytes, critical),
    st.builds(TsInitiatorPayload, st.lists(traffic_selectors, max_size=4).map(tuple), critical),
    st.builds(TsResponderPayload, st.lists(traffic_selectors, max_size=4).map(tuple), critical),
    st.builds(
        ConfigurationPayload, u8, st.lists(config_attributes, max_size=5).map(tuple), critical
    ),
    st.builds(EapPayload, small_bytes, critical),
    st.builds(UnknownPayload, unknown_payload_types, small_bytes, st.just(False)),
)
"""Every payload that may appear anywhere in a chain (not SK or SKF)."""

inner_type = st.one_of(st.sampled_from([int(t) for t in PayloadType if 33 <= t <= 48]), u8)

encrypted_payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(EncryptedPayload, inner_type, st.binary(max_size=64), critical),
    st.builds(EncryptedFragmentPayload, u16, u16, inner_type, st.binary(max_size=64), critical),
)
"""SK and SKF payloads, which may only end a message."""


@st.composite
def payload_chains(draw: st.DrawFn, *, encrypted: bool = True) -> tuple[Payload, ...]:
    """A payload chain, optionally ending with an SK or SKF payload."""
    chain = draw(st.lists(plain_payloads, max_size=6))
    if encrypted and draw(st.booleans()):
        chain.append(draw(encrypted_payloads))
    return tuple(chain)


messages = st.builds(
    IkeMessage,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    st.one_of(st.sampled_from(list(ExchangeType)), u8),
    u32,
    payload_chains(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 15),
)
"""Valid IKEv2 messages with any mix of payloads."""
