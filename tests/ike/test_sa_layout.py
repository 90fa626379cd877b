"""ike/sa.py and ike/proposals.py after their split into modules of one job each: every
name they offered is still theirs to import, and the SA's parts log as the SA."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType

import pytest
from twisted.logger import LogEvent, LogLevel, capturedLogs

from tests.ike.test_sa import CL, GW, Pair, config, exchange_of
from twisted_rserpool.ike import host, inbound, proposals, sa, state, timers
from twisted_rserpool.ike.constants import ExchangeType
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.tasks import common

#: What ike.proposals offered before the split (its __all__ and the transform type and
#: protocol numbers that the tasks and tests import from it).
PROPOSALS_NAMES = [
    "DH",
    "DH_PREFERENCE",
    "ENCR",
    "ENCRYPTION_PREFERENCE",
    "ESN",
    "ESN_PREFERENCE",
    "ESP_ALGORITHMS",
    "IKE_ALGORITHMS",
    "INTEG",
    "INTEGRITY_PREFERENCE",
    "LEGACY_TRANSFORMS",
    "PRF",
    "PRF_PREFERENCE",
    "PROTO_ESP",
    "PROTO_IKE",
    "ChildSuite",
    "IkeSuite",
    "OfferedProposal",
    "OfferedTransform",
    "ProposalError",
    "child_proposal",
    "child_suite_from_proposal",
    "child_suite_set",
    "ike_proposal",
    "ike_suite_set",
    "parse_child_suites",
    "parse_ike_suites",
    "select_child",
    "select_ike",
    "suite_from_proposal",
]
PARTS = ["suites", "suite_names", "negotiation"]


@pytest.mark.parametrize("name", PROPOSALS_NAMES)
def test_proposals_keeps_its_names(name: str) -> None:
    """Each name is exported by ike.proposals and is the object of the one module that
    defines it (proposals itself, or suites, suite_names, negotiation)."""
    assert name in proposals.__all__
    value = getattr(proposals, name)
    homes = [
        module
        for module in (importlib.import_module(f"twisted_rserpool.ike.{part}") for part in PARTS)
        if name in module.__all__
    ]
    assert len(homes) <= 1
    if homes:
        assert getattr(homes[0], name) is value
    else:
        assert value.__module__ == "twisted_rserpool.ike.proposals"


def test_sa_keeps_its_names() -> None:
    """ike.sa still exports what it did, from the modules that now hold them."""
    assert set(sa.__all__) == {
        "Address",
        "IkeSa",
        "IkeSaHost",
        "State",
        "Succession",
        "from_payload",
        "to_payload",
    }
    assert sa.Address is host.Address and sa.IkeSaHost is host.IkeSaHost
    assert sa.State is state.State
    assert sa.from_payload is common.from_payload and sa.to_payload is common.to_payload


def _from_parts(events: Sequence[LogEvent], module: ModuleType) -> list[LogEvent]:
    """The events whose format string is one of ``module``'s (the part that logged them)."""
    assert module.__file__ is not None
    with open(module.__file__, encoding="utf-8") as source:
        text = source.read()
    return [e for e in events if isinstance(e.get("log_format"), str) and e["log_format"] in text]


def test_inbound_and_timers_log_as_the_sa() -> None:
    """The receiving side and the timers log under the SA's namespace, with the SA as the
    source, as they did inside ike.sa: a tampered IKE_AUTH dropped, a request resent."""
    pair = Pair()

    def flip(name: str, data: bytes) -> bytes | None:
        if name == "cl" and exchange_of(data)[0] == ExchangeType.IKE_AUTH:
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    client = IkeEndpoint(config("client@test"), CL)
    with capturedLogs() as events:
        pair.cl.initiate(GW, 0.0)
        pair.pump(0.0, flip)
        client.initiate(GW, 0.0)
        client.handle_timer(2.0)
    dropped = [
        e for e in _from_parts(events, inbound) if str(e["log_format"]).startswith("dropping")
    ]
    resent = _from_parts(events, timers)
    assert dropped and resent
    assert dropped[0]["log_level"] == LogLevel.info
    assert resent[0]["log_level"] == LogLevel.debug
    for event in (dropped[0], resent[0]):
        assert event["log_namespace"] == "twisted_rserpool.ike.sa.IkeSa"
        assert isinstance(event["log_source"], sa.IkeSa)
