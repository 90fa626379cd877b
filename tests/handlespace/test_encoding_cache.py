"""The encodings a handlespace entry caches are the checked encoder's bytes, never stale."""

from __future__ import annotations

from dataclasses import fields, replace
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.handlespace.support import HOME, PEER, element
from tests.wire.strategies import addresses, pool_elements, u16, u32
from twisted_rserpool.handlespace import UNLIMITED, Handlespace, PoolElementEntry
from twisted_rserpool.handlespace.element import encoded_elements
from twisted_rserpool.wire.parameters import (
    LeastUsedPolicy,
    PoolElementParameter,
    SctpTransport,
    SelectionPolicy,
    TcpTransport,
    Transport,
    UnknownPolicy,
)

POOL = b"pool"


def assert_fresh(entry: PoolElementEntry) -> None:
    """The cached encodings equal what the encoder makes of the entry now."""
    assert entry.encoded() == entry.element.encode()
    assert entry.encoded_with_owner() == entry.element_with_owner().encode()


@st.composite
def same_kind_policy(draw: st.DrawFn, policy: SelectionPolicy) -> SelectionPolicy:
    """A policy of the same type as ``policy`` with other values (a new load, weight...)."""
    if isinstance(policy, UnknownPolicy):
        return UnknownPolicy(policy.unknown_policy_type, draw(st.binary(max_size=16)))
    return type(policy)(*[draw(u32) for _ in fields(policy)])


@st.composite
def same_kind_transport(draw: st.DrawFn, transport: Transport) -> Transport:
    """A transport of the same type and use as ``transport``, elsewhere."""
    changes: dict[str, Any] = {}
    names = {f.name for f in fields(transport)}
    if "port" in names:
        changes["port"] = draw(u16)
    if "address" in names:
        changes["address"] = draw(addresses)
    if isinstance(transport, SctpTransport):
        changes["addresses"] = tuple(draw(st.lists(addresses, min_size=1, max_size=3)))
    same: Any = transport
    changed: Transport = replace(same, **changes)
    return changed


@st.composite
def updates(draw: st.DrawFn, first: PoolElementParameter) -> list[PoolElementParameter]:
    """Re-registrations of ``first`` that its pool accepts: new policy values, transports,
    life, ASAP transport, or the same content again."""
    current = first
    result = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["policy", "transport", "life", "asap", "same"]))
        if kind == "policy":
            current = replace(current, policy=draw(same_kind_policy(current.policy)))
        elif kind == "transport":
            current = replace(
                current, user_transport=draw(same_kind_transport(current.user_transport))
            )
        elif kind == "life":
            current = replace(current, registration_life=draw(st.integers(-1, 100_000)))
        elif kind == "asap" and current.asap_transport is not None:
            asap_transport = draw(same_kind_transport(current.asap_transport))
            current = replace(current, asap_transport=asap_transport)  # type: ignore[arg-type]
        result.append(current)
    return result


@given(
    st.data(),
    pool_elements.filter(lambda pe: pe.owner_identity is None),
    st.one_of(st.none(), st.sampled_from(["pe-1", "x" * 300])),
)
def test_cached_encodings_follow_every_update(
    data: st.DataObject, first: PoolElementParameter, owner: str | None
) -> None:
    """After registration, each re-registration (new policy values, transport, life or
    ASAP transport, or unchanged), a takeover and the adoption of an owner identity, the
    entry's cached encodings are exactly the encoder's bytes (an owner too long for the
    wire stays out of the ENRP encoding)."""
    handlespace = Handlespace(UNLIMITED)
    handlespace.register(POOL, first, now=0.0)
    entry = handlespace.get(POOL, first.pe_identifier)
    assert entry is not None
    assert_fresh(entry)
    for now, update in enumerate(data.draw(updates(first)), start=1):
        handlespace.register(POOL, update, now=float(now), owner_identity=owner)
        assert entry.element == update
        assert_fresh(entry)
    handlespace.take_over(first.home_server_identifier, first.home_server_identifier ^ 1, now=9.0)
    assert entry.home_server_identifier == first.home_server_identifier ^ 1
    assert_fresh(entry)


def test_new_content_gives_new_bytes() -> None:
    """A PE re-registered with another load is encoded anew; so is its ENRP form when
    it adopts an owner identity or moves to another home."""
    handlespace = Handlespace(UNLIMITED)
    handlespace.register(POOL, element(1, LeastUsedPolicy(10), home=HOME), now=0.0)
    entry = handlespace.get(POOL, 1)
    assert entry is not None
    old, old_enrp = entry.encoded(), entry.encoded_with_owner()
    assert old == old_enrp  # no owner identity yet
    handlespace.register(POOL, element(1, LeastUsedPolicy(20), home=HOME), now=1.0)
    assert entry.encoded() != old
    assert entry.encoded() == element(1, LeastUsedPolicy(20), home=HOME).encode()
    # Owner adopted: the ASAP form stays, the ENRP form names the owner.
    asap = entry.encoded()
    handlespace.register(POOL, entry.element, now=2.0, owner_identity="pe-1")
    assert entry.encoded() is asap
    assert entry.encoded_with_owner() == replace(entry.element, owner_identity="pe-1").encode()
    handlespace.take_over(HOME, PEER, now=3.0)
    assert entry.encoded() == element(1, LeastUsedPolicy(20), home=PEER).encode()
    assert_fresh(entry)


def test_unchanged_reregistration_keeps_the_stored_object_and_its_bytes() -> None:
    """An equal element keeps the stored object (so ``is`` tells an unchanged
    re-registration) and the bytes cached for it; a changed one replaces both."""
    handlespace = Handlespace(UNLIMITED)
    first = element(1, LeastUsedPolicy(10))
    handlespace.register(POOL, first, now=0.0)
    entry = handlespace.get(POOL, 1)
    assert entry is not None
    cached = entry.encoded()
    handlespace.register(POOL, element(1, LeastUsedPolicy(10)), now=1.0)
    assert entry.element is first
    assert entry.encoded() is cached
    handlespace.register(POOL, element(1, LeastUsedPolicy(10), life=61), now=2.0)
    assert entry.element is not first and entry.element.registration_life == 61
    assert entry.encoded() == entry.element.encode() != cached


def test_assigning_an_entry_element_invalidates_its_bytes() -> None:
    """Whoever assigns ``element`` (the handlespace does on updates) gets fresh bytes."""
    entry = PoolElementEntry(POOL, element(1, LeastUsedPolicy(1)), "pe-1", 0.0, "pe-1")
    before = entry.encoded(), entry.encoded_with_owner()
    moved = replace(
        element(1, LeastUsedPolicy(1)),
        user_transport=TcpTransport(5001, IPv4Address("192.0.2.9")),
    )
    entry.element = moved
    assert (entry.encoded(), entry.encoded_with_owner()) != before
    assert_fresh(entry)
    entry.owner_identity = "pe-2"
    assert entry.encoded_with_owner() == replace(moved, owner_identity="pe-2").encode()


@given(
    st.lists(
        pool_elements.filter(lambda pe: pe.owner_identity is None),
        max_size=6,
        unique_by=lambda pe: pe.pe_identifier,
    ),
    st.binary(max_size=12),
    st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_encoded_elements_is_the_elements_and_their_bytes_joined(
    elements: list[PoolElementParameter], prefix: bytes, warm: list[bool]
) -> None:
    """encoded_elements gives the entries' PE parameters in order and the prefix followed by
    the encoder's bytes of each, whether an entry's encoding was cached before or not (and
    caches it)."""
    entries = [PoolElementEntry(POOL, pe, None, 0.0) for pe in elements]
    for entry, cached in zip(entries, warm, strict=False):
        if cached:
            entry.encoded()
    got, joined = encoded_elements(entries, prefix)
    assert got == tuple(elements)
    assert all(a is b for a, b in zip(got, elements, strict=True))
    assert joined == prefix + b"".join(pe.encode() for pe in elements)
    for entry in entries:
        assert_fresh(entry)
