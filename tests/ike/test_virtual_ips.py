"""Virtual IPs (RFC 7296 2.19, 3.15): leases in CFG_REPLY, TSi narrowed, leases released.

Two in-memory endpoints (``tests.ike.test_sa.Pair``): our initiator asks for addresses with
``request_addresses``, the gateway leases them from its ``address_pool``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from twisted.python import usage

from tests.ike import test_auth_eap as eap
from tests.ike.test_gateway import FakeReactor
from tests.ike.test_sa import ANY_TS, Pair, config, create_child_sa, esp_offer, forge, of
from tests.ike.test_tap import parse
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.addresspool import AddressPool
from twisted_rserpool.ike.admin import gatewayStatus
from twisted_rserpool.ike.child import selector_from_network
from twisted_rserpool.ike.codec.configuration import (
    ConfigurationAttribute,
    ConfigurationPayload,
    attribute_value,
)
from twisted_rserpool.ike.config import IkeConfig
from twisted_rserpool.ike.constants import (
    CfgType,
    ConfigAttributeType,
    ExchangeType,
    NotifyType,
)
from twisted_rserpool.ike.events import (
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
)
from twisted_rserpool.ike.gateway import IkeGatewayProtocol
from twisted_rserpool.ike.payloads import (
    NoncePayload,
    NotifyPayload,
    TsInitiatorPayload,
    decode_message,
    decode_payload_chain,
)
from twisted_rserpool.ike.redirect import RedirectPolicy, StaticGateways, parse_gateway
from twisted_rserpool.ike.sa import State
from twisted_rserpool.ike.tasks import ike_auth

PROTECTED = (selector_from_network("198.51.100.0/24"), selector_from_network("2001:db8:99::/64"))
ANY4 = IPv4Address("0.0.0.0")
ANY6 = IPv6Address("::")


def gateway(pool: AddressPool, **kw: object) -> IkeConfig:
    return config(
        "gw@test",
        address_pool=pool,
        dns_servers=(ip_address("10.8.0.53"), ip_address("fd00:8::53")),
        local_ts=PROTECTED,
        **kw,
    )


def client(identity: str = "client@test", *addresses: IPv4Address | IPv6Address) -> IkeConfig:
    return config(identity, request_addresses=addresses or (ANY4,))


def pool4(network: str = "10.8.0.0/24") -> AddressPool:
    return AddressPool([ip_network(network)])


def established(events: list[IkeEvent]) -> IkeSaEstablished:
    (up,) = of(events, IkeSaEstablished)
    assert isinstance(up, IkeSaEstablished)
    return up


def child(events: list[IkeEvent]) -> ChildSaEstablished:
    (done,) = of(events, ChildSaEstablished)
    assert isinstance(done, ChildSaEstablished)
    return done


def reply_attributes(pair: Pair) -> list[tuple[int, object]]:
    """The CFG_REPLY the gateway sent in its last IKE_AUTH response, decrypted."""
    (cl_sa,) = list(pair.cl)
    for name, data in reversed(pair.sent):
        message = decode_message(data)
        if name == "gw" and message.exchange_type == 35:
            assert cl_sa.cipher_in is not None
            encrypted = message.encrypted
            assert encrypted is not None
            plain = cl_sa.cipher_in.open(data, len(data) - len(encrypted.data) - 4)
            payloads = decode_payload_chain(encrypted.first_payload_type, plain)
            (cp,) = [p for p in payloads if isinstance(p, ConfigurationPayload)]
            assert cp.cfg_type == CfgType.CFG_REPLY
            return [(a.attribute_type, attribute_value(a)) for a in cp.attributes]
    raise AssertionError("no IKE_AUTH response")


def test_lease_in_cfg_reply_and_tsi_narrowed() -> None:
    """The first address of the pool comes back in CFG_REPLY with the DNS server and the
    protected subnet; both sides' CHILD_SA has TSi = that address alone, TSr = --subnet."""
    pool = pool4()
    pair = Pair(gateway(pool), client())
    pair.establish()
    assert established(pair.cl_events).virtual_ips == (IPv4Address("10.8.0.1"),)
    assert established(pair.gw_events).virtual_ips == (IPv4Address("10.8.0.1"),)
    attributes = reply_attributes(pair)
    assert (ConfigAttributeType.INTERNAL_IP4_ADDRESS, ip_address("10.8.0.1")) in [
        (k, getattr(v, "ip", v)) for k, v in attributes
    ]
    assert (ConfigAttributeType.INTERNAL_IP4_DNS, ip_address("10.8.0.53")) in attributes
    assert (ConfigAttributeType.INTERNAL_IP4_SUBNET, ip_network("198.51.100.0/24")) in attributes
    assert (ConfigAttributeType.INTERNAL_IP6_SUBNET, ip_network("2001:db8:99::/64")) in attributes
    # No IPv6 address was asked for: no IPv6 DNS server either.
    assert all(k != ConfigAttributeType.INTERNAL_IP6_DNS for k, _ in attributes)
    for events in (pair.cl_events, pair.gw_events):
        made = child(events).child
        assert made.ts_i == (selector_from_network("10.8.0.1/32"),)
        assert made.ts_r == PROTECTED
    (cl_sa,) = list(pair.cl)
    assert cl_sa.dns_servers == (ip_address("10.8.0.53"),)
    assert [lease.address for lease in pool] == [IPv4Address("10.8.0.1")]


def test_recording_installer_reports_nothing_installed() -> None:
    """ChildSaEstablished says the recording installer installed nothing; the CHILD_SA is
    still kept (its DELETE is answered)."""
    pair = Pair()
    spi = pair.establish()
    done = child(pair.cl_events)
    assert done.installed is False and child(pair.gw_events).installed is False
    (cl_sa,) = list(pair.cl)
    assert list(cl_sa.children) == [done.child.inbound_spi]
    assert pair.cl.delete_child_sa(spi, done.child.inbound_spi, 1.0)


def test_released_on_delete() -> None:
    """Deleting the IKE SA (either side) returns the address to the pool."""
    for deleter in ("cl", "gw"):
        pool = pool4()
        pair = Pair(gateway(pool), client())
        spi = pair.establish()
        assert len(pool) == 1
        if deleter == "cl":
            pair.cl.delete_ike_sa(spi, 1.0)
        else:
            (gw_sa,) = list(pair.gw)
            pair.gw.delete_ike_sa(gw_sa.spi_r, 1.0)
        pair.pump(1.0)
        assert of(pair.gw_events, IkeSaDeleted)
        assert len(pool) == 0


def test_released_on_liveness_failure() -> None:
    """A client that stops answering is declared unreachable: its address is free again."""
    pool = pool4()
    pair = Pair(gateway(pool, liveness_interval=10.0), client())
    pair.establish()
    now = 0.0
    while (deadline := pair.gw.next_deadline()) is not None and now < 1000:
        now = deadline
        pair.gw_events += pair.gw.handle_timer(now)
        pair.gw.datagrams_to_send()  # the client never hears them
    (gone,) = of(pair.gw_events, IkeSaDeleted)
    assert gone.reason == "peer unreachable"  # type: ignore[attr-defined]
    assert len(pool) == 0 and pool.lease_of(IPv4Address("10.8.0.1")) is None


def test_released_on_informational_redirect() -> None:
    """A client redirected away (INFORMATIONAL REDIRECT) frees its address once its IKE SA
    here goes; an IKE_AUTH redirect never leases one."""
    pool = pool4()
    policy = RedirectPolicy(StaticGateways([parse_gateway("192.0.2.77")]))
    pair = Pair(gateway(pool), client())
    pair.gw.redirect_policy = policy
    pair.establish()
    assert len(pool) == 1
    (gw_sa,) = list(pair.gw)
    assert gw_sa.redirect(parse_gateway("192.0.2.77"), "admin", 1.0)
    pair.pump(1.0)
    # Our client follows (the pair delivers its IKE_SA_INIT for the new gateway here too,
    # where it stays half-open); the gateway's redirect_delete_timeout ends the old IKE SA.
    assert len(pool) == 1
    pair.tick(100.0)
    assert gw_sa.state == State.CLOSED and len(pool) == 0

    in_auth = pool4()
    pair = Pair(gateway(in_auth), client())
    pair.gw.redirect_policy = RedirectPolicy(
        StaticGateways([parse_gateway("192.0.2.77")]), always=True, in_auth=True
    )
    pair.establish()
    assert len(in_auth) == 0


def test_exhaustion_answered_with_internal_address_failure() -> None:
    """A pool of one address: the second client gets INTERNAL_ADDRESS_FAILURE and no
    CHILD_SA, yet its IKE SA is established and stays."""
    pool = AddressPool([ip_network("10.8.0.4/31")], reserved=[IPv4Address("10.8.0.5")])
    gw = gateway(pool)
    first = Pair(gw, client("a@test"))
    first.establish()
    assert len(pool) == 1
    second = Pair(gw, client("b@test"))
    second.establish()
    established(second.cl_events)
    (failed,) = of(second.cl_events, ChildSaFailed)
    assert failed.notify_type == NotifyType.INTERNAL_ADDRESS_FAILURE  # type: ignore[attr-defined]
    (gw_failed,) = of(second.gw_events, ChildSaFailed)
    assert gw_failed.notify_type == NotifyType.INTERNAL_ADDRESS_FAILURE  # type: ignore[attr-defined]
    assert not of(second.cl_events, ChildSaEstablished)
    assert len(list(second.cl)) == 1 and len(list(second.gw)) == 1
    assert len(pool) == 1


def test_requested_address_honoured_or_refused() -> None:
    """A free address of the pool that the client asks for is its; one taken by another
    identity, or outside the pool, is not (the client gets another)."""
    pool = pool4()
    gw = gateway(pool)
    a = Pair(gw, client("a@test", IPv4Address("10.8.0.42")))
    a.establish()
    assert established(a.cl_events).virtual_ips == (IPv4Address("10.8.0.42"),)
    b = Pair(gw, client("b@test", IPv4Address("10.8.0.42")))
    b.establish()
    (got,) = established(b.cl_events).virtual_ips
    assert got != IPv4Address("10.8.0.42") and got in ip_network("10.8.0.0/24")
    c = Pair(gw, client("c@test", IPv4Address("192.0.2.9")))
    c.establish()
    (outside,) = established(c.cl_events).virtual_ips
    assert outside in ip_network("10.8.0.0/24")
    assert len({got, outside, IPv4Address("10.8.0.42")}) == 3


def test_reconnect_with_same_identity_gets_same_address() -> None:
    """A client that reconnects while its old IKE SA exists gets its address back; the
    address is freed only when both IKE SAs are gone."""
    pool = pool4()
    gw = gateway(pool)
    pair = Pair(gw, client("a@test"))
    old = pair.establish()
    (first,) = established(pair.cl_events).virtual_ips
    pair.cl_events.clear()
    new = pair.establish(1.0)
    assert established(pair.cl_events).virtual_ips == (first,)
    assert len(pool) == 1
    pair.cl.delete_ike_sa(old, 2.0)
    pair.pump(2.0)
    assert pool.lease_of(first) is not None
    pair.cl.delete_ike_sa(new, 3.0)
    pair.pump(3.0)
    assert len(pool) == 0


def test_lease_survives_ike_sa_rekey() -> None:
    """The successor of a rekeyed IKE SA holds the lease; deleting it frees the address."""
    pool = pool4()
    pair = Pair(gateway(pool), client())
    spi = pair.establish()
    assert pair.cl.rekey_ike_sa(spi, 1.0)
    pair.pump(1.0)
    (cl_sa,) = list(pair.cl)
    (gw_sa,) = list(pair.gw)
    assert cl_sa.spi_i != spi and gw_sa.virtual_ips == (IPv4Address("10.8.0.1"),)
    assert pool.held_by(gw_sa) == (IPv4Address("10.8.0.1"),)
    pair.cl.delete_ike_sa(cl_sa.spi_i, 2.0)
    pair.pump(2.0)
    assert len(pool) == 0


def test_ipv6_and_dual_stack() -> None:
    """IPv6 pools lease an address with its prefix; asking for both families gets both,
    and TSi holds both addresses."""
    pool = AddressPool([ip_network("10.8.0.0/24"), ip_network("fd00:8::/64")])
    pair = Pair(gateway(pool), client("a@test", ANY4, ANY6))
    pair.cl.config = config(  # the client offers both families in TSi
        "a@test", request_addresses=(ANY4, ANY6)
    )
    pair.establish()
    assert established(pair.cl_events).virtual_ips == (
        IPv4Address("10.8.0.1"),
        IPv6Address("fd00:8::1"),
    )
    attributes = reply_attributes(pair)
    (v6,) = [v for k, v in attributes if k == ConfigAttributeType.INTERNAL_IP6_ADDRESS]
    assert str(v6) == "fd00:8::1/64"
    assert (ConfigAttributeType.INTERNAL_IP6_DNS, ip_address("fd00:8::53")) in attributes
    assert set(child(pair.gw_events).child.ts_i) == {
        selector_from_network("10.8.0.1/32"),
        selector_from_network("fd00:8::1/128"),
    }


def test_ipv6_only_pool_ignores_ipv4_request() -> None:
    """A request for an IPv4 address of an IPv6-only gateway is ignored (3.15.4): asking
    for both gets the IPv6 address only; asking for IPv4 alone gets INTERNAL_ADDRESS_FAILURE."""
    pool = AddressPool([ip_network("fd00:8::/120")])
    pair = Pair(gateway(pool), client("a@test", ANY4, ANY6))
    pair.establish()
    assert established(pair.cl_events).virtual_ips == (IPv6Address("fd00:8::1"),)
    only4 = Pair(gateway(pool), client("b@test", ANY4))
    only4.establish()
    (failed,) = of(only4.cl_events, ChildSaFailed)
    assert failed.notify_type == NotifyType.INTERNAL_ADDRESS_FAILURE  # type: ignore[attr-defined]


def test_cp_required_with_a_pool() -> None:
    """With a pool, a client that sends no CP(CFG_REQUEST) gets FAILED_CP_REQUIRED for its
    CHILD_SA (it could otherwise claim any inner address); its IKE SA stays."""
    pool = pool4()
    pair = Pair(gateway(pool), config("client@test"))
    pair.establish()
    established(pair.cl_events)
    (failed,) = of(pair.cl_events, ChildSaFailed)
    assert failed.notify_type == NotifyType.FAILED_CP_REQUIRED  # type: ignore[attr-defined]
    assert len(pool) == 0 and len(list(pair.gw)) == 1


def test_without_pool_no_cfg_reply() -> None:
    """A gateway without a pool (and no DNS servers) ignores the address request: no
    CFG_REPLY, the CHILD_SA as before (TSi not narrowed to an address)."""
    pair = Pair(config("gw@test"), client())
    pair.establish()
    assert established(pair.cl_events).virtual_ips == ()
    assert child(pair.cl_events).child.ts_i == config("x@test").local_ts


def test_vpngw_options() -> None:
    """--address-pool, --subnet and --dns (each repeatable) reach the gateway's IkeConfig,
    one pool shared by every listen address; bad values are usage errors."""
    options = parse(
        "--listen", "127.0.0.9,127.0.0.10",
        "--address-pool", "10.8.0.0/24", "--address-pool", "fd00:8::/64",
        "--subnet", "198.51.100.0/24", "--subnet", "2001:db8:99::/64",
        "--dns", "10.8.0.53", "--dns", "fd00:8::53",
    )  # fmt: skip
    reactor = FakeReactor()
    service = vpngw.makeService(options, reactor)
    service.startService()  # type: ignore[no-untyped-call]
    try:
        (_, first, _, _), (_, second, _, _) = reactor.listened
        assert isinstance(first, IkeGatewayProtocol) and isinstance(second, IkeGatewayProtocol)
        config_a, config_b = first.endpoint.config, second.endpoint.config
        pool = config_a.address_pool
        assert pool is not None and pool is config_b.address_pool
        assert pool.networks == (ip_network("10.8.0.0/24"), ip_network("fd00:8::/64"))
        assert config_a.local_ts == PROTECTED
        assert config_a.dns_servers == (ip_address("10.8.0.53"), ip_address("fd00:8::53"))
    finally:
        service.stopService()  # type: ignore[no-untyped-call]
    default = vpngw.makeService(parse(), FakeReactor())
    assert default is not None
    assert parse()["vip"] == {"address_pool": None, "dns_servers": ()}
    for bad in (["--address-pool", "10.8.0.1/24"], ["--subnet", "x"], ["--dns", "10.8.0.0/24"]):
        with pytest.raises(usage.UsageError):
            parse(*bad)


def test_later_child_sas_narrowed_to_the_lease() -> None:
    """An additional CHILD_SA (CREATE_CHILD_SA) gets TSi narrowed to the lease too, also
    after the gateway rekeyed the IKE SA (then the new IKE SA's initiator is the gateway)."""
    pool = pool4()
    pair = Pair(gateway(pool), client())
    spi = pair.establish()
    (gw_sa,) = list(pair.gw)
    assert gw_sa.rekey(1.0)
    pair.pump(1.0)
    (gw_sa,) = list(pair.gw)
    (cl_sa,) = list(pair.cl)
    assert gw_sa.initiator and cl_sa.spi_i != spi
    answer = create_child_sa(
        pair, cl_sa.local_spi, (esp_offer(b"wxyz"), NoncePayload(b"i" * 32), *ANY_TS), 2.0
    )
    (tsi,) = [p for p in answer if isinstance(p, TsInitiatorPayload)]
    assert tsi.selectors == (selector_from_network("10.8.0.1/32"),)
    assert pool.held_by(gw_sa) == (IPv4Address("10.8.0.1"),)


def send_cp(monkeypatch: pytest.MonkeyPatch, cp: ConfigurationPayload) -> Pair:
    """A pair whose client sends ``cp`` in IKE_AUTH instead of its own request."""
    monkeypatch.setattr(ike_auth, "address_request", lambda sa: cp)
    pair = Pair(gateway(pool4()), config("client@test"))
    pair.establish()
    return pair


def test_unknown_malformed_and_version_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown and malformed attributes are ignored, a requested address of the wrong
    length is treated as a request for any address, APPLICATION_VERSION is declined with
    an empty string, the netmask is given when asked."""
    cp = ConfigurationPayload(
        CfgType.CFG_REQUEST,
        (
            ConfigurationAttribute(0x7ABC, b"whatever"),
            ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_ADDRESS, b"\x0a\x08"),
            ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_NETMASK),
            ConfigurationAttribute(ConfigAttributeType.APPLICATION_VERSION),
            ConfigurationAttribute(ConfigAttributeType.SUPPORTED_ATTRIBUTES),
        ),
    )
    pair = send_cp(monkeypatch, cp)
    attributes = reply_attributes(pair)
    assert (ConfigAttributeType.INTERNAL_IP4_ADDRESS, IPv4Address("10.8.0.1")) in attributes
    assert (ConfigAttributeType.INTERNAL_IP4_NETMASK, IPv4Address("255.255.255.0")) in attributes
    assert (ConfigAttributeType.APPLICATION_VERSION, None) in attributes
    assert {k for k, _ in attributes} <= {
        ConfigAttributeType.INTERNAL_IP4_ADDRESS,
        ConfigAttributeType.INTERNAL_IP4_NETMASK,
        ConfigAttributeType.INTERNAL_IP4_DNS,
        ConfigAttributeType.INTERNAL_IP4_SUBNET,
        ConfigAttributeType.INTERNAL_IP6_SUBNET,
        ConfigAttributeType.APPLICATION_VERSION,
    }
    assert child(pair.gw_events).child.ts_i == (selector_from_network("10.8.0.1/32"),)


def test_cfg_set_accepts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """CFG_SET is accepted for nothing: no CFG_ACK (RFC 7296 3.15.1), no lease, and with a
    pool the CHILD_SA is FAILED_CP_REQUIRED; the IKE SA stays."""
    cp = ConfigurationPayload(
        CfgType.CFG_SET,
        (ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_ADDRESS, bytes(4)),),
    )
    pair = send_cp(monkeypatch, cp)
    with pytest.raises(ValueError):
        reply_attributes(pair)
    (failed,) = of(pair.gw_events, ChildSaFailed)
    assert failed.notify_type == NotifyType.FAILED_CP_REQUIRED  # type: ignore[attr-defined]
    established(pair.cl_events)


def test_admin_status_shows_leases() -> None:
    """The admin status lists each IKE SA's virtual IPs and the pool's leases."""
    pool = pool4()
    pair = Pair(gateway(pool), client())
    pair.establish()
    status = gatewayStatus([IkeGatewayProtocol(pair.gw, FakeReactor())], None)
    (sa,) = status["endpoints"][0]["sas"]
    assert sa["virtual_ips"] == ["10.8.0.1"]
    assert status["address_pool"] == {
        "networks": ["10.8.0.0/24"],
        "leased": {"10.8.0.1": "client@test"},
    }
    assert (
        gatewayStatus([IkeGatewayProtocol(Pair().gw, FakeReactor())], None)["address_pool"] is None
    )


def test_eap_leases_by_eap_identity() -> None:
    """After EAP the lease belongs to the EAP identity, not the IDi: two users behind one
    IDi get two addresses, and the CP of the first IKE_AUTH request is answered in the last
    round, with the CHILD_SA."""
    pool = pool4()
    gw = eap.gateway(address_pool=pool)
    alice = Pair(gw, eap.client(request_addresses=(ANY4,)))
    alice.establish()
    other = Pair(gw, eap.client(eap.USER, eap.PASSWORD, request_addresses=(ANY4,)))
    other.establish()
    (a,) = established(alice.cl_events).virtual_ips
    (b,) = established(other.cl_events).virtual_ips
    assert a != b
    assert {str(lease.identity) for lease in pool} == {"EAP alice", f"EAP {eap.USER.decode()}"}
    assert child(alice.gw_events).child.ts_i == (selector_from_network(f"{a}/32"),)


def test_retry_in_informational_after_exhaustion() -> None:
    """RFC 7296 3.15.4: a client refused for want of addresses retries its CP in an
    INFORMATIONAL exchange once one is free, gets it, and then a CHILD_SA narrowed to it;
    APPLICATION_VERSION there is declined with an empty string (2.20)."""
    pool = AddressPool([ip_network("10.8.0.4/31")], reserved=[IPv4Address("10.8.0.5")])
    gw = gateway(pool)
    first = Pair(gw, client("a@test"))
    first_spi = first.establish()
    second = Pair(gw, client("b@test"))
    spi = second.establish()
    (cl_sa,) = list(second.cl)
    request = ConfigurationPayload(
        CfgType.CFG_REQUEST,
        (
            ConfigurationAttribute(ConfigAttributeType.INTERNAL_IP4_ADDRESS),
            ConfigurationAttribute(ConfigAttributeType.APPLICATION_VERSION),
        ),
    )
    still_full = forge(cl_sa, ExchangeType.INFORMATIONAL, (request,), 1.0)
    second.pump(1.0)
    ((notify,),) = still_full.answers
    assert isinstance(notify, NotifyPayload)
    assert notify.notify_type == NotifyType.INTERNAL_ADDRESS_FAILURE
    first.cl.delete_ike_sa(first_spi, 2.0)
    first.pump(2.0)
    assert len(pool) == 0
    retry = forge(cl_sa, ExchangeType.INFORMATIONAL, (request,), 3.0)
    second.pump(3.0)
    ((cp,),) = retry.answers
    assert isinstance(cp, ConfigurationPayload) and cp.cfg_type == CfgType.CFG_REPLY
    values = {a.attribute_type: attribute_value(a) for a in cp.attributes}
    assert values[ConfigAttributeType.INTERNAL_IP4_ADDRESS] == IPv4Address("10.8.0.4")
    assert values[ConfigAttributeType.APPLICATION_VERSION] is None  # empty: declined
    (gw_sa,) = [sa for sa in second.gw if sa.spi_i == spi]
    assert gw_sa.virtual_ips == (IPv4Address("10.8.0.4"),)
    answer = create_child_sa(
        second, spi, (esp_offer(b"wxyz"), NoncePayload(b"i" * 32), *ANY_TS), 4.0
    )
    (tsi,) = [p for p in answer if isinstance(p, TsInitiatorPayload)]
    assert tsi.selectors == (selector_from_network("10.8.0.4/32"),)
    # Asking again changes nothing: the same address, still one lease.
    again = forge(cl_sa, ExchangeType.INFORMATIONAL, (request,), 5.0)
    second.pump(5.0)
    ((cp,),) = again.answers
    assert isinstance(cp, ConfigurationPayload) and len(pool) == 1


def test_logged_hint_asks_for_addresses() -> None:
    """With --address-pool the logged swanctl.conf asks for an address of each pool family
    and routes the --subnet networks; without, it is unchanged."""
    options = parse("--address-pool", "fd00:8::/64", "--subnet", "198.51.100.0/24")
    hint = vpngw._connect_hint(options)
    assert "    vips = ::\n" in hint
    folded = " ".join(hint.split())
    assert "children { net { remote_ts = 198.51.100.0/24 esp_proposals" in folded
    assert "vips" not in vpngw._connect_hint(parse())
