"""RFC 5355 2.3: the identity that registered a PE owns it at every server of the pool.

The owner travels in ENRP as the private skip-type parameter 0x8e01 inside the Pool Element
parameter (wire), the handlespace keeps it per PE, and the registrar refuses any other
identity's registration of that PE identifier with cause 10, wherever it arrives.
"""

from __future__ import annotations

import random
from contextlib import suppress
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs

from tests.tools.tshark import dissect, enrp_packet, field_values, problems
from tests.wire import strategies as s
from twisted_rserpool.enrp.registrar import Registrar, RegistrarConfig, Send
from twisted_rserpool.enrp.takeover import TakeoverRegistrar, takeover_security
from twisted_rserpool.handlespace import Handlespace, RegistrationRefused
from twisted_rserpool.security.authorization import AuthorizationPolicy, Grant, Role
from twisted_rserpool.security.context import SecurityContext
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire import parameters as parameters_module
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import (
    MAX_OWNER_LENGTH,
    ParameterType,
    PoolElementOwner,
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
    decode_parameter,
    owner_fits,
    tlv,
)

HOME_A = 0xA0000001
HOME_B = 0xB0000002
LOCAL = IPv4Address("127.0.0.1")
POLICY = AuthorizationPolicy(
    {
        "pe-1": Grant(frozenset({Role.POOL_ELEMENT}), ("echo",)),
        "pe-2": Grant(frozenset({Role.POOL_ELEMENT}), ("echo",)),
        "enrp-b": Grant(frozenset({Role.ENRP_SERVER})),
    },
    default=None,
)

owners = st.text(min_size=1, max_size=80).filter(owner_fits)


def psk(identity: str) -> SecurityContext:
    return SecurityContext(True, "TLSv1.3", "TLS_AES_128_GCM_SHA256", psk_identity=identity)


def element(
    pe: int = 7, port: int = 7000, home: int = HOME_A, owner: str | None = None
) -> PoolElementParameter:
    return PoolElementParameter(
        pe,
        home,
        30,
        TcpTransport(port, LOCAL),
        RoundRobinPolicy(),
        TcpTransport(port + 1, LOCAL),
        owner,
    )


# --------------------------------------------------------------------------- wire


@given(s.pool_elements, owners)
def test_owner_round_trips_inside_a_pool_element(pe: PoolElementParameter, owner: str) -> None:
    """A PE naming its owner encodes and decodes back to itself, owner included."""
    owned = replace(pe, owner_identity=owner)
    data = owned.encode()
    assert len(data) % 4 == 0
    assert decode_parameter(data) == owned
    assert decode_parameter(data).encode() == data


@given(s.pool_handles, s.pe_lists, owners)
def test_owner_round_trips_in_handle_update_and_table_response(
    handle: bytes, pes: tuple[PoolElementParameter, ...], owner: str
) -> None:
    """ENRP_HANDLE_UPDATE and every PE of an ENRP_HANDLE_TABLE_RESPONSE page carry owners."""
    owned = tuple(replace(pe, owner_identity=owner) for pe in pes)
    messages: list[Message] = [
        enrp.HandleUpdate(HOME_A, 0, enrp.UpdateAction.ADD_PE, handle, owned[0]),
        enrp.HandleTableResponse(HOME_A, HOME_B, (enrp.PoolEntry(handle, owned),)),
    ]
    for message in messages:
        decoded = enrp.decode(message.encode())
        assert decoded == message
        assert decoded.unrecognized_parameters == ()


def test_owner_is_the_last_tlv_of_the_pool_element_with_a_skip_type() -> None:
    """0x8e01 follows the ASAP transport; its top bits 10 mean "skip, do not report"."""
    data = element(owner="pe-1").encode()
    plain = element().encode()
    assert ParameterType.POOL_ELEMENT_OWNER >> 14 == 0b10
    owner_tlv = tlv(ParameterType.POOL_ELEMENT_OWNER, b"pe-1")
    assert data[4:] == plain[4:] + owner_tlv
    assert int.from_bytes(data[2:4], "big") == len(plain) + len(owner_tlv)


def test_without_an_owner_the_encoding_is_unchanged() -> None:
    """A PE without owner (every ASAP message, other implementations) is byte-for-byte RFC 5354."""
    pe = element()
    assert b"\x8e\x01" not in pe.encode()
    decoded = decode_parameter(pe.encode())
    assert isinstance(decoded, PoolElementParameter) and decoded.owner_identity is None


def test_a_decoder_that_does_not_know_0x8e01_skips_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """What another RFC 5354 receiver does: skip the parameter, report nothing."""
    message = enrp.HandleUpdate(HOME_A, 0, enrp.UpdateAction.ADD_PE, b"echo", element(owner="x"))
    decoders = dict(parameters_module._DECODERS)
    del decoders[ParameterType.POOL_ELEMENT_OWNER]
    monkeypatch.setattr(parameters_module, "_DECODERS", decoders)
    decoded = enrp.decode(message.encode())
    assert isinstance(decoded, enrp.HandleUpdate)
    assert decoded.pool_element == element()
    assert decoded.unrecognized_parameters == ()


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"", "1 to 255 bytes"),
        (b"x" * (MAX_OWNER_LENGTH + 1), "1 to 255 bytes"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_invalid_owner_values_are_refused(value: bytes, reason: str) -> None:
    """An empty, overlong or non-UTF-8 owner makes the PE Invalid Values."""
    plain = element().encode()
    body = plain[4:] + tlv(ParameterType.POOL_ELEMENT_OWNER, value)
    with pytest.raises(MalformedMessage, match=reason) as info:
        decode_parameter(tlv(ParameterType.POOL_ELEMENT, body))
    assert info.value.cause == CauseCode.INVALID_VALUES


def test_two_owners_are_refused() -> None:
    """A PE names at most one owner."""
    plain = element().encode()
    owner = tlv(ParameterType.POOL_ELEMENT_OWNER, b"a")
    with pytest.raises(MalformedMessage, match="at most one owner"):
        decode_parameter(tlv(ParameterType.POOL_ELEMENT, plain[4:] + owner + owner))


def test_owner_that_does_not_fit_is_not_encoded() -> None:
    """The encoder refuses what the decoder would refuse."""
    with pytest.raises(ValueError):
        PoolElementOwner("x" * (MAX_OWNER_LENGTH + 1)).encode()
    with pytest.raises(ValueError):
        PoolElementOwner("").encode()
    assert not owner_fits("\udcff")


def test_every_truncation_of_an_owned_update_is_malformed() -> None:
    """Cut anywhere (and the length fields fixed to match), decoding fails cleanly."""
    data = enrp.HandleUpdate(
        HOME_A, 0, enrp.UpdateAction.ADD_PE, b"echo", element(owner="pe-1")
    ).encode()
    for cut in range(len(data)):
        with pytest.raises(MalformedMessage):
            enrp.decode(data[:cut])
    pe_start = 4 + 12 + 8  # header, fixed fields, pool handle "echo"
    pe_length = int.from_bytes(data[pe_start + 2 : pe_start + 4], "big")
    for shorter in range(1, 8):
        # The owner TLV overruns its Pool Element parameter.
        broken = bytearray(data)
        broken[pe_start + 2 : pe_start + 4] = (pe_length - shorter).to_bytes(2, "big")
        with pytest.raises(MalformedMessage):
            enrp.decode(bytes(broken))


def test_tshark_dissects_owned_messages_without_complaint() -> None:
    """Wireshark reads our PEs as before and shows 0x8e01 as an unknown parameter."""
    from tests.conftest import requireTool

    path = requireTool("tshark")
    owned = element(owner="pe-1")
    no_asap = replace(owned, asap_transport=None)
    messages: list[Message] = [
        enrp.HandleUpdate(HOME_A, 0, enrp.UpdateAction.ADD_PE, b"echo", owned),
        enrp.HandleUpdate(HOME_A, 0, enrp.UpdateAction.ADD_PE, b"echo", no_asap),
        enrp.HandleTableResponse(
            HOME_A, HOME_B, (enrp.PoolEntry(b"echo", (owned, replace(owned, pe_identifier=8))),)
        ),
    ]
    layers = dissect([enrp_packet(m.encode()) for m in messages], tshark=path)
    for layer, message in zip(layers, messages, strict=True):
        assert problems(layer) == []
        tree = layer["enrp"]
        assert "0x8e01" in field_values(tree, "enrp.parameter_type")
        count = 2 if isinstance(message, enrp.HandleTableResponse) else 1
        assert len(field_values(tree, "enrp.pool_element_pe_identifier")) == count
        assert field_values(tree, "enrp.parameter_value").count("70:65:2d:31") == count


# --------------------------------------------------------------------------- handlespace


def test_peer_learnt_pe_keeps_its_owner_outside_the_element() -> None:
    """The owner is PE state, not part of the element that ASAP hands out."""
    hs = Handlespace()
    hs.register(b"echo", element(owner="pe-1"), now=0.0, owner_identity="pe-1")
    entry = hs.get(b"echo", 7)
    assert entry is not None
    assert entry.owner_identity == "pe-1" and entry.identity is None
    assert entry.element.owner_identity is None
    assert entry.element_with_owner() == element(owner="pe-1")
    assert hs.resolve(b"echo", 1).elements[0].owner_identity is None


def test_owner_does_not_enter_the_pe_checksum() -> None:
    """RFC 5353 3.6: the checksum covers pool handle and PE identifier only."""
    with_owner, without = Handlespace(), Handlespace()
    with_owner.register(b"echo", element(), now=0.0, owner_identity="pe-1")
    without.register(b"echo", element(), now=0.0)
    assert with_owner.pe_checksum(HOME_A) == without.pe_checksum(HOME_A)
    assert with_owner.pe_checksum(HOME_A) == with_owner.recompute_pe_checksum(HOME_A)


def test_a_known_owner_stays() -> None:
    """Another owner is refused; an update naming none keeps it; an unknown one is adopted."""
    hs = Handlespace()
    hs.register(b"echo", element(), now=0.0)
    hs.register(b"echo", element(port=7002), now=1.0, owner_identity="pe-1")
    entry = hs.get(b"echo", 7)
    assert entry is not None and entry.owner_identity == "pe-1"
    with pytest.raises(RegistrationRefused) as info:
        hs.register(b"echo", element(port=9000), now=2.0, owner_identity="pe-2")
    assert info.value.cause == CauseCode.NON_UNIQUE_PE_IDENTIFIER
    assert entry.element.user_transport == TcpTransport(7002, LOCAL)
    hs.register(b"echo", element(port=7004), now=3.0)
    assert entry.owner_identity == "pe-1"
    assert entry.element.user_transport == TcpTransport(7004, LOCAL)


# --------------------------------------------------------------------------- registrar


class Server:
    """One registrar with its handlespace, clock and connections."""

    def __init__(self, identifier: int, *, secure: bool = True, takeover: bool = False) -> None:
        self.now = 100.0
        self.identifier = identifier
        self.handlespace = Handlespace(rng=random.Random(1))
        cls = TakeoverRegistrar if takeover else Registrar
        self.registrar = cls(
            RegistrarConfig(identifier, secure=secure),
            self.handlespace,
            POLICY,
            rng=random.Random(2),
        )
        self.connections = 0

    def connect(self, security: SecurityContext, port: int = 40000) -> int:
        self.connections += 1
        self.registrar.connection_ready(self.connections, security, ("127.0.0.1", port))
        return self.connections

    def register(self, connection: int, pe: PoolElementParameter) -> asap.RegistrationResponse:
        actions = self.registrar.message_received(
            connection, asap.Registration(b"echo", pe), self.now
        )
        responses = [
            a.message
            for a in actions
            if isinstance(a, Send) and isinstance(a.message, asap.RegistrationResponse)
        ]
        assert len(responses) == 1, actions
        return responses[0]

    def learn(self, pe: PoolElementParameter) -> None:
        """What the ENRP glue does with a peer's ADD_PE."""
        self.handlespace.register(b"echo", pe, now=self.now, owner_identity=pe.owner_identity)

    def port(self, pe: int = 7) -> int | None:
        entry = self.handlespace.get(b"echo", pe)
        if entry is None:
            return None
        transport = entry.element.user_transport
        assert isinstance(transport, TcpTransport)
        return transport.port


def refused_with_security(response: asap.RegistrationResponse) -> bool:
    return (
        response.reject
        and response.error is not None
        and response.error.code == CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS
    )


def test_hijack_of_a_peer_learnt_pe_is_refused_naming_both_identities() -> None:
    """pe-1's PE X, learnt from server A with its owner: pe-2 re-registering X at B fails."""
    b = Server(HOME_B)
    b.learn(element(port=7000, owner="pe-1"))
    attacker = b.connect(psk("pe-2"))
    with capturedLogs() as events:
        response = b.register(attacker, element(port=6666, home=0))
    assert refused_with_security(response)
    assert b.port() == 7000
    lines = [e for e in events if e.get("claimant") == "pe-2"]
    assert len(lines) == 1
    assert lines[0]["owner"] == "pe-1"
    assert b.registrar.counters["registrations_refused_not_owner"] == 1


def test_hijack_of_a_local_pe_is_refused() -> None:
    """The same at the PE's home server."""
    a = Server(HOME_A)
    assert not a.register(a.connect(psk("pe-1")), element(home=0)).reject
    response = a.register(a.connect(psk("pe-2"), 40001), element(port=6666, home=0))
    assert refused_with_security(response)
    assert a.port() == 7000


def test_the_owner_moves_its_registration_to_another_server() -> None:
    """A legitimate move of home: pe-1 re-registers X at B, which becomes its home."""
    b = Server(HOME_B)
    b.learn(element(port=7000, owner="pe-1"))
    response = b.register(b.connect(psk("pe-1")), element(port=7000, home=0))
    assert not response.reject
    entry = b.handlespace.get(b"echo", 7)
    assert entry is not None
    assert entry.home_server_identifier == HOME_B
    assert entry.identity == entry.owner_identity == "pe-1"
    assert entry.element_with_owner().owner_identity == "pe-1"


def test_unknown_owner_is_refused_on_a_secure_server_only() -> None:
    """A PE from a peer that did not name its owner: refuse when secure, accept when not."""
    secure = Server(HOME_B)
    secure.learn(element(port=7000))
    assert refused_with_security(secure.register(secure.connect(psk("pe-1")), element(home=0)))
    insecure = Server(HOME_B, secure=False)
    insecure.learn(element(port=7000))
    assert not insecure.register(insecure.connect(psk("pe-1")), element(home=0)).reject


def test_an_owner_claimed_in_asap_is_ignored() -> None:
    """A PE cannot name an owner in its ASAP_REGISTRATION: the connection's identity decides."""
    a = Server(HOME_A)
    response = a.register(a.connect(psk("pe-2")), element(home=0, owner="pe-1"))
    assert not response.reject
    entry = a.handlespace.get(b"echo", 7)
    assert entry is not None and entry.owner_identity == "pe-2"
    assert entry.element.owner_identity is None


def test_takeover_keeps_the_owner_and_the_owner_may_return() -> None:
    """Over B's takeover connection the PE re-registers under B's name for it, owned by pe-1."""
    b = Server(HOME_B, takeover=True)
    b.learn(element(port=7000, owner="pe-1"))
    b.handlespace.take_over(HOME_A, HOME_B, now=b.now)
    assert isinstance(b.registrar, TakeoverRegistrar)
    link = b.connect(takeover_security(psk("enrp-b"), 7))
    b.registrar.grant_takeover(link, b"echo", 7)
    assert not b.register(link, element(port=7000, home=0)).reject
    entry = b.handlespace.get(b"echo", 7)
    assert entry is not None
    assert entry.owner_identity == "pe-1"
    assert entry.identity == "enrp-b#takeover-00000007"
    # Another identity still cannot have it, and the owner itself can.
    assert refused_with_security(b.register(b.connect(psk("pe-2"), 40001), element(home=0)))
    assert not b.register(b.connect(psk("pe-1"), 40002), element(home=0)).reject
    assert entry.identity == entry.owner_identity == "pe-1"


def test_a_takeover_grant_covers_only_its_pe() -> None:
    """The takeover connection may not register a PE it was not granted."""
    b = Server(HOME_B, takeover=True)
    b.learn(element(pe=8, port=7000, owner="pe-1"))
    assert isinstance(b.registrar, TakeoverRegistrar)
    link = b.connect(takeover_security(psk("enrp-b"), 7))
    b.registrar.grant_takeover(link, b"echo", 7)
    assert b.register(link, element(pe=8, home=0)).reject
    assert b.port(8) == 7000


# ---------------------------------------------------------------- property: pool of two


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["register", "deregister", "drop"]),
            st.sampled_from(["pe-1", "pe-2"]),
            st.sampled_from([0, 1]),
            st.integers(7000, 7003),
        ),
        max_size=25,
    )
)
def test_no_interleaving_lets_a_non_owner_change_the_pe(
    operations: list[tuple[str, str, int, int]],
) -> None:
    """Two servers with the owner glue: only the owner of the moment ever registers X.

    The owner of the moment is whoever registered X first since it last vanished from the
    whole pool. Each operation runs at one server; its handle update then reaches the other.
    """
    servers = [Server(HOME_A), Server(HOME_B)]
    links: dict[tuple[int, str], int] = {}
    owner: str | None = None
    for action, identity, index, port in operations:
        server = servers[index]
        other = servers[1 - index]
        link = links.get((index, identity))
        if link is None:
            link = links[(index, identity)] = server.connect(psk(identity), 40000 + len(links))
        if action == "register":
            if not server.register(link, element(port=port, home=0)).reject:
                assert owner in (None, identity)
                owner = identity
        elif action == "deregister":
            server.registrar.message_received(link, asap.Deregistration(b"echo", 7), server.now)
        else:
            server.registrar.connection_lost(link, server.now)
            del links[(index, identity)]
        _propagate(server, other)
        entries = [each.handlespace.get(b"echo", 7) for each in servers]
        if all(entry is None for entry in entries):
            owner = None
        for entry in entries:
            assert entry is None or entry.owner_identity == owner


def _propagate(source: Server, target: Server) -> None:
    """ENRP_HANDLE_UPDATE from ``source`` about the PEs it is home for, with the owner glue."""
    entry = source.handlespace.get(b"echo", 7)
    mirrored = target.handlespace.get(b"echo", 7)
    if entry is not None and entry.home_server_identifier == source.identifier:
        with suppress(RegistrationRefused):  # the target keeps its own registration
            target.learn(entry.element_with_owner())
    elif (
        entry is None
        and mirrored is not None
        and mirrored.home_server_identifier == source.identifier
    ):
        target.handlespace.deregister(b"echo", 7)
