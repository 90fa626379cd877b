"""Exchange tasks on the in-memory pair: the CHILD_SA rekey we start (ike.tasks.rekey),
and its Deferred in the Twisted initiator."""

from __future__ import annotations

import dataclasses

import pytest
from twisted.python.failure import Failure

from tests.ike.test_gateway import GW, pump, result, setup
from tests.ike.test_sa import Pair, config, exchange_of, of
from twisted_rserpool.ike.child import ChildSa, selector_from_network
from twisted_rserpool.ike.constants import ExchangeType, NotifyType
from twisted_rserpool.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaEstablished,
)
from twisted_rserpool.ike.initiator import ChildSaRekeyFailed
from twisted_rserpool.ike.proposals import parse_child_suites

ONLY_CBC = parse_child_suites("aes256-sha512")
ONLY_GCM = parse_child_suites("aes128gcm16")


def local_remote(child: ChildSa) -> tuple[object, object]:
    """(our selectors, the peer's) whichever side began the CHILD_SA's exchange."""
    return (child.ts_i, child.ts_r) if child.initiator else (child.ts_r, child.ts_i)


def only(children: dict[bytes, ChildSa]) -> ChildSa:
    (child,) = children.values()
    return child


@pytest.mark.parametrize("starter", ["cl", "gw"])
def test_child_rekey_replaces_the_child(starter: str) -> None:
    """Either side rekeys the CHILD_SA: both install the same new keys, the old one is gone
    from both installers, and the selectors stay the narrowed ones."""
    pair = Pair(cl_config=config("client@test", local_ts=(selector_from_network("10.1.0.0/16"),)))
    pair.establish()
    old_cl, old_gw = only(pair.cl_installer.installed), only(pair.gw_installer.installed)
    endpoint = pair.cl if starter == "cl" else pair.gw
    (sa,) = list(endpoint)
    old = old_cl if starter == "cl" else old_gw
    pair.cl_events.clear()
    pair.gw_events.clear()
    sent_before = len(pair.sent)
    assert endpoint.rekey_child_sa(sa.local_spi, old.inbound_spi, 1.0)
    pair.pump(1.0)
    new_cl, new_gw = only(pair.cl_installer.installed), only(pair.gw_installer.installed)
    assert new_cl.inbound_spi != old_cl.inbound_spi and new_gw.inbound_spi != old_gw.inbound_spi
    assert new_cl.inbound_spi == new_gw.outbound_spi and new_cl.outbound_spi == new_gw.inbound_spi
    assert new_cl.encryption_key_i == new_gw.encryption_key_i != old_cl.encryption_key_i
    assert new_cl.encryption_key_r == new_gw.encryption_key_r
    assert local_remote(new_cl) == local_remote(old_cl)
    assert local_remote(new_gw) == local_remote(old_gw)
    assert (new_cl.initiator, new_gw.initiator) == (
        (True, False) if starter == "cl" else (False, True)
    )
    exchanges = [(name, exchange_of(d)) for name, d in pair.sent[sent_before:]]
    other = "gw" if starter == "cl" else "cl"
    assert exchanges == [
        (starter, (ExchangeType.CREATE_CHILD_SA, False)),
        (other, (ExchangeType.CREATE_CHILD_SA, True)),
        (starter, (ExchangeType.INFORMATIONAL, False)),
        (other, (ExchangeType.INFORMATIONAL, True)),
    ]
    for events, by_peer in ((pair.cl_events, starter != "cl"), (pair.gw_events, starter != "gw")):
        (deleted,) = of(events, ChildSaDeleted)
        assert isinstance(deleted, ChildSaDeleted) and deleted.by_peer is by_peer
    assert len(of(pair.cl_events if starter == "cl" else pair.gw_events, ChildSaEstablished)) == 1


def test_child_rekey_refused_keeps_the_old_child() -> None:
    """A responder that accepts none of our ESP suites any more: ChildSaFailed, old kept."""
    pair = Pair()
    spi = pair.establish()
    old = only(pair.cl_installer.installed)
    (gw_sa,) = list(pair.gw)
    gw_sa.config = dataclasses.replace(
        gw_sa.config, child_suites=parse_child_suites("aes256-sha512")
    )
    pair.cl.config = dataclasses.replace(
        pair.cl.config, child_suites=parse_child_suites("aes128gcm16")
    )
    cl_sa = pair.cl.get(spi)
    assert cl_sa is not None
    cl_sa.config = pair.cl.config
    assert pair.cl.rekey_child_sa(spi, old.inbound_spi, 1.0)
    pair.pump(1.0)
    (failed,) = of(pair.cl_events, ChildSaFailed)
    assert isinstance(failed, ChildSaFailed) and failed.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
    assert only(pair.cl_installer.installed) == old
    assert not of(pair.cl_events, ChildSaDeleted)


def test_child_rekey_of_a_child_deleted_meanwhile_sends_nothing() -> None:
    """A rekey queued behind another request is dropped if its CHILD_SA went first."""
    pair = Pair()
    spi = pair.establish()
    old = only(pair.cl_installer.installed)
    pair.cl.check_liveness(spi, 1.0)  # occupies the window
    assert pair.cl.rekey_child_sa(spi, old.inbound_spi, 1.0)
    assert pair.cl.delete_child_sa(spi, old.inbound_spi, 1.0)
    sent_before = len(pair.sent)
    pair.pump(1.0)
    sent = [exchange_of(d) for _, d in pair.sent[sent_before:]]
    assert ExchangeType.CREATE_CHILD_SA not in {e for e, _ in sent}
    assert not pair.cl_installer.installed and not pair.gw_installer.installed
    assert not pair.cl.rekey_child_sa(spi, old.inbound_spi, 2.0)  # no such CHILD_SA now


def test_child_rekey_keeps_transport_mode() -> None:
    pair = Pair()
    spi = pair.establish()
    (sa,) = list(pair.cl)
    old = only(pair.cl_installer.installed)
    transport = dataclasses.replace(old, transport_mode=True)
    sa.children[old.inbound_spi] = transport
    assert pair.cl.rekey_child_sa(spi, old.inbound_spi, 1.0)
    pair.pump(1.0)
    assert only(pair.gw_installer.installed).transport_mode


def test_initiator_rekey_child_deferred() -> None:
    """IkeInitiatorProtocol.rekeyChildSa fires with the new CHILD_SA; a refusal fails it
    with ChildSaRekeyFailed; an unknown SPI fails at once."""
    _clock, gw, cl, gw_udp, cl_udp = setup()
    children: list[ChildSaEstablished] = []
    observed = cl.ikeEventReceived

    def observe(event: IkeEvent) -> None:
        if isinstance(event, ChildSaEstablished):
            children.append(event)
        observed(event)

    cl.ikeEventReceived = observe  # type: ignore[method-assign]
    established = cl.initiate(GW)
    pump(gw, cl, gw_udp, cl_udp)
    up = result(established)  # type: ignore[arg-type]
    assert isinstance(up, IkeSaEstablished)
    (first,) = children
    d = cl.rekeyChildSa(up.spi_i, first.child.inbound_spi)
    pump(gw, cl, gw_udp, cl_udp)
    new = result(d)  # type: ignore[arg-type]
    # The recording installer installs nothing, and the event says so.
    assert isinstance(new, ChildSaEstablished) and not new.installed
    assert new.child.inbound_spi != first.child.inbound_spi
    assert list(cl.endpoint.installer.installed) == [new.child.inbound_spi]  # type: ignore[attr-defined]
    (gw_sa,) = list(gw.endpoint)
    gw_sa.config = dataclasses.replace(
        gw_sa.config, child_suites=parse_child_suites("aes256-sha512")
    )
    cl_sa = cl.endpoint.get(up.spi_i)
    assert cl_sa is not None
    cl_sa.config = dataclasses.replace(cl_sa.config, child_suites=ONLY_GCM)
    refused = cl.rekeyChildSa(up.spi_i, new.child.inbound_spi)
    pump(gw, cl, gw_udp, cl_udp)
    failure = result(refused)  # type: ignore[arg-type]
    assert isinstance(failure, Failure) and isinstance(failure.value, ChildSaRekeyFailed)
    assert failure.value.event.notify_type == NotifyType.NO_PROPOSAL_CHOSEN
    unknown = result(cl.rekeyChildSa(up.spi_i, b"none"))  # type: ignore[arg-type]
    assert isinstance(unknown, Failure) and isinstance(unknown.value, ValueError)
