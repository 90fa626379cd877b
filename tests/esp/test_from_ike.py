"""ESP SAs from CHILD_SAs that the IKE core really negotiated (the in-memory client/gateway
pair of tests/ike): keys, SPIs and selectors line up both ways, also after a CHILD_SA rekey
begun by the gateway (whose side is then the exchange's initiator)."""

from __future__ import annotations

import pytest

from tests.ike.test_sa import Pair, config
from twisted_rserpool.esp import Dropped, DropReason, EspSa
from twisted_rserpool.ike.child import ChildSa, selector_from_network
from twisted_rserpool.ike.proposals import parse_child_suites

from .support import ipv4


def only(children: dict[bytes, ChildSa]) -> ChildSa:
    """The one CHILD_SA an installer holds."""
    (child,) = children.values()
    return child


def both_ways(client: EspSa, gateway: EspSa) -> None:
    """A packet client -> gateway and its answer, each opened by the other side."""
    query = ipv4(source="10.1.0.5", destination="10.2.0.7")
    answer = ipv4(source="10.2.0.7", destination="10.1.0.5")
    sealed = client.seal(query, 0.0)
    assert isinstance(sealed, bytes) and gateway.open(sealed, 0.0) == query
    sealed = gateway.seal(answer, 0.0)
    assert isinstance(sealed, bytes) and client.open(sealed, 0.0) == answer
    stray = client.seal(ipv4(source="10.1.0.5", destination="10.3.0.1"), 0.0)
    assert isinstance(stray, bytes)
    result = gateway.open(stray, 0.0)
    assert isinstance(result, Dropped) and result.reason is DropReason.SELECTOR


@pytest.mark.parametrize(
    "suite", ["aes128gcm16", "chacha20poly1305-esn", "aes256-sha512", "aes128-sha256-esn"]
)
def test_negotiated_child_sa_carries_traffic(suite: str) -> None:
    """Client 10.1/16, gateway 10.2/16: the negotiated CHILD_SA, then its rekey by the
    gateway, each carry a packet both ways and drop one outside the selectors."""
    suites = parse_child_suites(suite)
    pair = Pair(
        gw_config=config(
            "gw@test", child_suites=suites, local_ts=(selector_from_network("10.2.0.0/16"),)
        ),
        cl_config=config(
            "client@test", child_suites=suites, local_ts=(selector_from_network("10.1.0.0/16"),)
        ),
    )
    pair.establish()
    cl_child, gw_child = only(pair.cl_installer.installed), only(pair.gw_installer.installed)
    assert cl_child.suite == gw_child.suite == suites[0]
    both_ways(EspSa.from_child(cl_child), EspSa.from_child(gw_child))
    (ike_sa,) = list(pair.gw)
    assert pair.gw.rekey_child_sa(ike_sa.local_spi, gw_child.inbound_spi, 1.0)
    pair.pump(1.0)
    cl_new, gw_new = only(pair.cl_installer.installed), only(pair.gw_installer.installed)
    assert gw_new.initiator and not cl_new.initiator
    both_ways(EspSa.from_child(cl_new), EspSa.from_child(gw_new))
