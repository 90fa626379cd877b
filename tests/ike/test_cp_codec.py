"""CP payload attribute values (RFC 7296 3.15.1): round trips and a fuzzed decoder."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twisted_rserpool.ike.addresspool import AddressPool
from twisted_rserpool.ike.codec.configuration import (
    ConfigurationAttribute,
    ConfigurationPayload,
    application_version,
    attribute_value,
    internal_address,
    internal_dns,
    internal_netmask,
    internal_subnet,
)
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.constants import CfgType, ConfigAttributeType, PayloadType
from twisted_rserpool.ike.errors import InvalidIkeMessage
from twisted_rserpool.ike.payloads import decode_payload_chain, encode_payload_chain
from twisted_rserpool.ike.tasks.configuration import answer_request

V4 = st.integers(0, 2**32 - 1).map(IPv4Address)
V6 = st.integers(0, 2**128 - 1).map(IPv6Address)
NET4 = st.builds(lambda a, p: IPv4Network((a, p), strict=False), V4, st.integers(0, 32))
NET6 = st.builds(lambda a, p: IPv6Network((a, p), strict=False), V6, st.integers(0, 128))
T = ConfigAttributeType


def round_trip(attribute: ConfigurationAttribute) -> ConfigurationAttribute:
    """Through a whole CP payload's octets and back."""
    first, chain = encode_payload_chain([ConfigurationPayload(CfgType.CFG_REPLY, (attribute,))])
    (cp,) = decode_payload_chain(first, chain)
    assert isinstance(cp, ConfigurationPayload)
    (back,) = cp.attributes
    return back


@given(V4)
def test_ip4_address_and_dns(address: IPv4Address) -> None:
    assert attribute_value(round_trip(internal_address(address))) == address
    dns = round_trip(internal_dns(address))
    assert dns.attribute_type == T.INTERNAL_IP4_DNS and attribute_value(dns) == address


@given(V6, st.integers(0, 128))
def test_ip6_address_with_prefix(address: IPv6Address, prefix: int) -> None:
    value = attribute_value(round_trip(internal_address(address, prefix)))
    assert value == IPv6Interface((address, prefix))
    assert attribute_value(round_trip(internal_dns(address))) == address


@given(NET4 | NET6)
def test_subnets(network: IPv4Network | IPv6Network) -> None:
    assert attribute_value(round_trip(internal_subnet(network))) == network


@given(st.integers(0, 32))
def test_netmask(prefix: int) -> None:
    assert attribute_value(round_trip(internal_netmask(prefix))) == IPv4Network((0, prefix)).netmask


@given(st.text(st.characters(min_codepoint=32, max_codepoint=126)))
def test_application_version(text: str) -> None:
    value = attribute_value(round_trip(application_version(text)))
    assert value == (text or None)


def test_requests_are_empty() -> None:
    """Empty attributes ask for a value; INTERNAL_IP6_SUBNET always carries one."""
    assert internal_address(None).attribute_type == T.INTERNAL_IP4_ADDRESS
    assert internal_address(None, version=6).attribute_type == T.INTERNAL_IP6_ADDRESS
    assert attribute_value(ConfigurationAttribute(T.INTERNAL_IP6_ADDRESS)) is None
    with pytest.raises(ValueError):
        attribute_value(ConfigurationAttribute(T.INTERNAL_IP6_SUBNET))
    with pytest.raises(ValueError):
        application_version("bad\x00")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (T.INTERNAL_IP4_ADDRESS, b"\x0a\x00\x00"),
        (T.INTERNAL_IP6_ADDRESS, bytes(16)),
        (T.INTERNAL_IP6_ADDRESS, bytes(16) + b"\x81"),
        (T.INTERNAL_IP4_SUBNET, bytes(4) + b"\xff\x00\xff\x00"),
        (T.INTERNAL_IP6_DNS, bytes(4)),
        (T.APPLICATION_VERSION, b"\xff"),
        (T.SUPPORTED_ATTRIBUTES, b"\x00\x01"),
        (1234, b"x"),
    ],
)
def test_malformed_values_raise_value_error(kind: int, value: bytes) -> None:
    with pytest.raises(ValueError):
        attribute_value(ConfigurationAttribute(kind, value))


@given(st.binary(max_size=300))
def test_fuzzed_cp_decoder(body: bytes) -> None:
    """Any CP body decodes or is INVALID_SYNTAX; every decoded attribute's value reads or
    raises ValueError (the gateway ignores those), and the payload re-encodes to as many
    octets that decode to the same payload (RESERVED octets and R bits zeroed)."""
    header = bytes((0, 0)) + (len(body) + 4).to_bytes(2, "big")
    try:
        (cp,) = decode_payload_chain(PayloadType.CP, header + body)
    except InvalidIkeMessage:
        return
    assert isinstance(cp, ConfigurationPayload)
    for attribute in cp.attributes:
        with contextlib.suppress(ValueError):
            attribute_value(attribute)
    encoded = cp.encode_body()
    assert encoded[0] == body[0] and len(encoded) == len(body)
    again = decode_payload_chain(PayloadType.CP, header + encoded)
    assert again == (cp,)


@given(
    st.lists(
        st.builds(
            ConfigurationAttribute,
            st.integers(0, 2**15 - 1),
            st.binary(max_size=40),
        ),
        max_size=20,
    ),
    st.sampled_from(list(CfgType)),
)
def test_cp_payload_round_trip(attributes: list[ConfigurationAttribute], cfg: CfgType) -> None:
    payload = ConfigurationPayload(cfg, tuple(attributes))
    first, chain = encode_payload_chain([payload])
    (back,) = decode_payload_chain(first, chain)
    assert isinstance(back, ConfigurationPayload)
    assert back.cfg_type == cfg and back.attributes == payload.attributes


class FakeSa:
    """What ``answer_request`` reads of an IKE SA (hashable, as a lease holder)."""

    def __init__(self, config: IkeConfig) -> None:
        self.config = config
        self.peer_id = Identity.parse("c@test")
        self.peer_address = ("192.0.2.1", 500)
        self.virtual_ips: tuple[IPv4Address | IPv6Address, ...] = ()
        self.lease_owner: object = None
        self.client = False


ATTRIBUTE_TYPES = st.sampled_from([int(t) for t in T]) | st.integers(0, 2**15 - 1)


@given(
    st.lists(
        st.builds(ConfigurationAttribute, ATTRIBUTE_TYPES, st.binary(max_size=20)), max_size=12
    ),
    st.sampled_from(list(CfgType)),
)
def test_fuzzed_requests_to_the_gateway(
    attributes: list[ConfigurationAttribute], cfg: CfgType
) -> None:
    """Whatever a client puts in its CP, the gateway answers without an exception: at most
    one address per family, each leased from the pool to this SA, or a refusal; nothing
    but a CFG_REQUEST gets a reply or a lease."""
    pool = AddressPool([IPv4Network("10.8.0.0/29"), IPv6Network("fd00:8::/125")])
    config = IkeConfig(
        Identity.parse("gw@test"),
        PskTable(),
        address_pool=pool,
        dns_servers=(IPv4Address("10.8.0.53"),),
    )
    sa: Any = FakeSa(config)
    reply, refusal = answer_request(sa, [ConfigurationPayload(cfg, tuple(attributes))])
    if cfg != CfgType.CFG_REQUEST:
        assert reply is None and refusal is None and len(pool) == 0
        return
    assert refusal is None or reply is None
    assert len({a.version for a in sa.virtual_ips}) == len(sa.virtual_ips)
    assert set(pool.held_by(sa)) == set(sa.virtual_ips)
    if reply is not None:
        assert reply.cfg_type == CfgType.CFG_REPLY
        addresses = [
            a
            for a in reply.attributes
            if a.attribute_type in (T.INTERNAL_IP4_ADDRESS, T.INTERNAL_IP6_ADDRESS)
        ]
        assert len(addresses) == len(sa.virtual_ips)
