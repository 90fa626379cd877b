"""Alice and Bob, two in-memory IKE endpoints, replay an exchange octet for octet when the
randomness comes from the configuration's seeded source (``IkeConfig.random``)."""

from __future__ import annotations

import random

import pytest

from tests.ike.test_sa import Pair, config, of
from twisted_rserpool.ike.child import ChildSa
from twisted_rserpool.ike.config import IkeConfig
from twisted_rserpool.ike.events import IkeEvent, IkeSaDeleted, IkeSaEstablished, IkeSaRekeyed
from twisted_rserpool.ike.proposals import parse_ike_suites

SUITES = [
    "aes128gcm16-prfsha256-x25519",
    "aes128-sha256-ecp256",
    "aes256-sha384-ecp521",
    "aes128-sha256-modp2048",
]


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def run(
    alice: IkeConfig, bob: IkeConfig
) -> tuple[list[tuple[str, bytes]], list[IkeEvent], list[IkeEvent], list[ChildSa]]:
    """Alice (initiator) and Bob: IKE SA with a CHILD_SA, liveness, IKE rekey, delete."""
    pair = Pair(gw_config=bob, cl_config=alice)
    spi = pair.establish(0.0)
    pair.cl.check_liveness(spi, 1.0)
    pair.pump(1.0)
    assert pair.cl.rekey_ike_sa(spi, 2.0)
    pair.pump(2.0)
    rekeyed = of(pair.cl_events, IkeSaRekeyed)[0]
    assert isinstance(rekeyed, IkeSaRekeyed)
    children = list(pair.cl_installer.installed.values()) + list(
        pair.gw_installer.installed.values()
    )
    pair.cl.delete_ike_sa(rekeyed.spi_i, 3.0)
    pair.pump(3.0)
    return pair.sent, pair.cl_events, pair.gw_events, children


def configs(suite: str, alice_seed: int, bob_seed: int) -> tuple[IkeConfig, IkeConfig]:
    suites = parse_ike_suites(suite)
    return (
        config("alice@test", ike_suites=suites, random=seeded(alice_seed).randbytes),
        config("bob@test", ike_suites=suites, random=seeded(bob_seed).randbytes),
    )


@pytest.mark.parametrize("suite", SUITES)
def test_same_seeds_same_octets(suite: str) -> None:
    first = run(*configs(suite, 1, 2))
    second = run(*configs(suite, 1, 2))
    sent, alice_events, bob_events, _ = first
    assert of(alice_events, IkeSaEstablished) and of(bob_events, IkeSaRekeyed)
    assert [e.reason for e in of(alice_events, IkeSaDeleted)] == ["rekeyed", "deleted"]  # type: ignore[attr-defined]
    assert len(sent) >= 10
    assert first == second
    # ...and the keys themselves are the same, not only the octets on the wire.
    assert [c.encryption_key_i for c in first[3]] == [c.encryption_key_i for c in second[3]]


@pytest.mark.parametrize("suite", SUITES[:2])
def test_other_seed_other_octets(suite: str) -> None:
    """Another seed on one side changes every message that side sends."""
    base = run(*configs(suite, 1, 2))[0]
    for changed, other in (("cl", configs(suite, 3, 2)), ("gw", configs(suite, 1, 4))):
        sent = run(*other)[0]
        assert [n for n, _ in sent] == [n for n, _ in base]
        pairs = [(a, b) for (name, a), (_, b) in zip(base, sent, strict=True) if name == changed]
        assert pairs and all(a != b for a, b in pairs)


def test_system_randomness_differs() -> None:
    """With the default source (os.urandom) two runs never agree on a single message."""
    suites = parse_ike_suites(SUITES[0])
    alice, bob = config("alice@test", ike_suites=suites), config("bob@test", ike_suites=suites)
    first = run(alice, bob)[0]
    second = run(alice, bob)[0]
    assert all(a != b for (_, a), (_, b) in zip(first, second, strict=True))
