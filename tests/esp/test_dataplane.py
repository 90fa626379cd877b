"""DataPlaneInstaller: CHILD_SAs the IKE core negotiated really installed into the ESP SAD
(installed=True), traffic both ways in memory, make-before-break on rekey, removal on
delete, per-CHILD_SA counters, and the endpoint's NAT-T port handing ESP to it."""

from __future__ import annotations

import dataclasses

from tests.ike.test_sa import Pair, config
from twisted_rserpool.esp.dataplane import DataPlaneInstaller
from twisted_rserpool.ike.child import ChildSa, selector_from_network
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import ChildSaEstablished

from .support import GCM128, child_pair, ipv4

QUERY = ipv4(source="10.1.0.5", destination="10.2.0.7")
ANSWER = ipv4(source="10.2.0.7", destination="10.1.0.5")
STRAY = ipv4(source="10.1.0.5", destination="10.3.0.1")


def installed_pair() -> tuple[Pair, DataPlaneInstaller, DataPlaneInstaller]:
    pair = Pair(
        gw_config=config("gw@test", local_ts=(selector_from_network("10.2.0.0/16"),)),
        cl_config=config("client@test", local_ts=(selector_from_network("10.1.0.0/16"),)),
    )
    gw, cl = DataPlaneInstaller(), DataPlaneInstaller()
    pair.gw.installer, pair.cl.installer = gw, cl
    pair.establish()
    return pair, gw, cl


def children(pair: Pair) -> list[ChildSa]:
    (sa,) = list(pair.gw)
    return list(sa.children.values())


def test_negotiated_child_sa_is_installed_and_carries_traffic() -> None:
    """installed=True because it was; a packet each way; one outside the selectors (sealed
    by a client that ignores them) dropped and counted on its CHILD_SA."""
    pair, gw, cl = installed_pair()
    established = [e for e in pair.gw_events if isinstance(e, ChildSaEstablished)]
    assert [e.installed for e in established] == [True]
    assert len(gw) == len(cl) == 1
    sealed = cl.seal(QUERY, 1.0)
    assert sealed is not None
    datagram, peer = sealed
    assert peer == (pair.gw.local_address[0], 4500)
    assert gw.open(datagram, 1.0) == QUERY
    answer = gw.seal(ANSWER, 1.0)
    assert answer is not None and cl.open(answer[0], 1.0) == ANSWER
    assert cl.seal(STRAY, 1.0) is None  # no selector lets it out
    (client_sa,) = list(cl.sad)
    stray = client_sa.outbound.seal(STRAY, 1.0)
    assert isinstance(stray, bytes) and gw.open(stray, 1.0) is None
    (child,) = children(pair)
    status = gw.child_status(child)
    assert status is not None
    assert (status["packets_in"], status["packets_out"]) == (1, 1)
    assert status["bytes_in"] == len(QUERY) and status["bytes_out"] == len(ANSWER)
    assert status["drops"] == {"selector": 1}
    assert gw.counters == {"sealed": 1, "opened": 1, "out_dropped": 0, "in_dropped": 1}
    assert gw.open(datagram, 1.0) is None  # replayed
    assert gw.child_status(child)["drops"] == {"selector": 1, "replay": 1}  # type: ignore[index]


def test_rekey_installs_the_new_sa_and_removes_the_old() -> None:
    """After a CHILD_SA rekey the old SPIs are gone from both SADs and the new ones carry
    the traffic; deleting the IKE SA removes everything."""
    pair, gw, cl = installed_pair()
    (old,) = children(pair)
    (sa,) = list(pair.gw)
    assert pair.gw.rekey_child_sa(sa.local_spi, old.inbound_spi, 1.0)
    pair.pump(1.0)
    (new,) = children(pair)
    assert new.inbound_spi != old.inbound_spi
    assert gw.sad.get(old.inbound_spi) is None and gw.sad.get(new.inbound_spi) is not None
    assert len(gw) == len(cl) == 1
    sealed = cl.seal(QUERY, 2.0)
    assert sealed is not None and gw.open(sealed[0], 2.0) == QUERY
    assert gw.child_status(new)["packets_in"] == 1  # type: ignore[index]
    pair.gw.delete_ike_sa(sa.local_spi, 3.0)
    pair.pump(3.0)
    assert len(gw) == len(cl) == 0


def test_make_before_break() -> None:
    """With the successor installed before the old SA goes, the newest takes outbound
    traffic while the old one still receives what the peer sent with it: nothing lost."""
    gw = DataPlaneInstaller()
    peer = DataPlaneInstaller()
    old_cl, old_gw = child_pair(GCM128)
    new_cl, new_gw = child_pair(
        GCM128, seed=b"rekeyed", spis=(bytes.fromhex("c0000003"), bytes.fromhex("c0000004"))
    )
    assert gw.install(old_gw) and peer.install(old_cl)
    in_flight = peer.seal(QUERY, 1.0)
    assert gw.install(new_gw) and peer.install(new_cl)
    answer = gw.seal(ANSWER, 1.0)
    assert answer is not None and answer[0][:4] == new_cl.inbound_spi
    assert peer.open(answer[0], 1.0) == ANSWER
    assert in_flight is not None and gw.open(in_flight[0], 1.0) == QUERY
    gw.remove(old_gw)
    gw.remove(old_gw)  # twice: nothing
    late = peer.sad.get(old_cl.inbound_spi)
    assert late is not None
    stale = late.outbound.seal(QUERY, 2.0)
    assert isinstance(stale, bytes) and gw.open(stale, 2.0) is None
    assert gw.sad.counters == {"unknown_spi": 1}
    assert gw.child_status(old_gw) is None and gw.status()["child_sas"] == 1


def test_what_cannot_be_installed_reports_false() -> None:
    gw = DataPlaneInstaller()
    _, child = child_pair(GCM128)
    assert not gw.install(dataclasses.replace(child, transport_mode=True))
    assert gw.install(child)
    assert not gw.install(child)  # its inbound SPI is taken
    assert len(gw) == 1


def test_resolver_gives_the_current_peer_address() -> None:
    """The destination follows what ``resolve`` says now (the IKE SA's address after a NAT
    rebinding), and falls back to the address seen at install time."""
    where: list[tuple[str, int] | None] = [("198.51.100.9", 40000)]
    gw = DataPlaneInstaller(resolve=lambda child: where[0])
    _, child = child_pair(GCM128)
    assert gw.install(child)
    where[0] = ("198.51.100.9", 40001)
    sealed = gw.seal(ANSWER, 0.0)
    assert sealed is not None and sealed[1] == ("198.51.100.9", 40001)
    where[0] = None
    sealed = gw.seal(ANSWER, 0.0)
    assert sealed is not None and sealed[1] == ("198.51.100.9", 40000)


def test_endpoint_hands_esp_on_the_nat_t_port_to_its_receiver() -> None:
    """ESP on port 4500 goes to ``esp_receiver`` (counted in ``esp_received``); without one
    it is counted in ``esp_dropped``; keepalives and IKE are not ESP."""
    endpoint = IkeEndpoint(config("gw@test"), ("192.0.2.1", 500), nat_t_port=4500)
    esp = bytes.fromhex("c0000001 00000001") + b"ciphertext"
    endpoint.receive_datagram(esp, ("192.0.2.2", 4500), 0.0, 4500)
    assert endpoint.counters["esp_dropped"] == 1
    got: list[tuple[bytes, tuple[str, int], float]] = []
    endpoint.esp_receiver = lambda data, address, now: got.append((data, address, now))
    endpoint.receive_datagram(esp, ("192.0.2.2", 4500), 5.0, 4500)
    endpoint.receive_datagram(b"\xff", ("192.0.2.2", 4500), 5.0, 4500)
    assert got == [(esp, ("192.0.2.2", 4500), 5.0)]
    assert endpoint.counters["esp_received"] == 1 and endpoint.counters["esp_dropped"] == 1
