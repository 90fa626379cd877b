"""A redirect policy of one's own: the ``choose_gateway`` hook, ``twistd vpngw
--redirect-policy package.module.Class`` and ``makeService(options, redirectPolicyClass=...)``
(issue 15 finding 3, the gateway's half)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from twisted.application.service import IService, MultiService
from twisted.python import usage

from tests.ike.test_gateway import FakeReactor
from tests.ike.test_redirect import CL, B, C, Net, established
from twisted_rserpool.ike import IkeUdpService, parse_gateway
from twisted_rserpool.ike.codec import GatewayIdentity
from twisted_rserpool.ike.redirect import (
    RedirectDecision,
    RedirectPolicy,
    RedirectRequest,
    StaticGateways,
)
from twisted_rserpool.ike.tap import Options, makeService

HERE = __name__
#: Where ByClient sends each client address.
CHOSEN = {CL[0]: parse_gateway(C[0])}


class ByClient(RedirectPolicy):
    """Sends the clients of CHOSEN to their gateway; asks the source for anyone else."""

    def choose_gateway(
        self, request: RedirectRequest, exclude: Sequence[str]
    ) -> GatewayIdentity | None:
        return CHOSEN.get(request.peer_address[0]) or super().choose_gateway(request, exclude)


def test_choose_gateway_picks_the_target() -> None:
    """decide() asks choose_gateway where to send the client, with the address the
    request arrived on excluded; the default asks the source."""
    policy = ByClient(StaticGateways([parse_gateway("192.0.2.9")]), always=True)
    request = RedirectRequest("IKE_SA_INIT", CL, B, 0, 0.0)
    assert policy.decide(request) == RedirectDecision(parse_gateway(C[0]), "static")
    other = RedirectRequest("IKE_SA_INIT", ("198.51.100.1", 500), B, 0, 0.0)
    assert policy.decide(other) == RedirectDecision(parse_gateway("192.0.2.9"), "static")
    assert (
        RedirectPolicy(StaticGateways([parse_gateway(B[0])]), always=True).decide(request) is None
    )  # the source has nothing but the gateway itself


def test_redirect_all_asks_choose_gateway() -> None:
    """Moving established clients (drain, admin) without a target uses the hook too."""
    net = Net()
    policy = ByClient(StaticGateways([parse_gateway("192.0.2.9")]))
    gateway = net.add(B, policy=policy)
    net.add(C)
    net.client.initiate(B, 0.0)
    net.pump()
    assert gateway.redirect_all(None, 5.0, "drain") == 1
    net.pump(5.0)
    assert [e.peer_address for e in established(net, CL)] == [B, C]


def parse(*arguments: str) -> Options:
    options = Options()  # type: ignore[no-untyped-call]
    options.parseOptions(list(arguments))  # type: ignore[no-untyped-call]
    return options


def policies(service: IService) -> list[object]:
    """The redirect policy of each listen address's endpoint."""
    assert isinstance(service, MultiService)
    return [s.protocol.endpoint.redirect_policy for s in service if isinstance(s, IkeUdpService)]


def test_redirect_policy_option_builds_that_class() -> None:
    """--redirect-policy names the class; the other redirect options are its arguments."""
    options = parse(
        "--redirect-policy", f"{HERE}.ByClient",
        "--redirect-to", "192.0.2.7,192.0.2.8", "--redirect-max-sas", "10",
    )  # fmt: skip
    assert options["redirect-policy"] is ByClient
    service = makeService(options, FakeReactor())
    assert isinstance(service, MultiService)
    [policy] = policies(service)
    assert type(policy) is ByClient and policy.max_ike_sas == 10
    assert isinstance(policy.source, StaticGateways)
    assert [str(g) for g in policy.source.gateways()] == ["192.0.2.7", "192.0.2.8"]


def test_named_policy_is_asked_without_redirect_rules() -> None:
    """A class of one's own is built even with no gateway and no rule given (its hooks
    may be all it needs); without one such a gateway never redirects."""
    [policy] = policies(makeService(parse("--redirect-policy", f"{HERE}.ByClient"), FakeReactor()))
    assert type(policy) is ByClient
    assert policies(makeService(parse(), FakeReactor())) == [None]


def test_make_service_argument_wins() -> None:
    """makeService's redirectPolicyClass is used over --redirect-policy."""

    class Other(RedirectPolicy):
        pass

    options = parse("--redirect-policy", f"{HERE}.ByClient")
    [policy] = policies(makeService(options, FakeReactor(), redirectPolicyClass=Other))
    assert type(policy) is Other


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no_such_module.Policy", "does not name an object"),
        ("twisted_rserpool.ike.StaticGateways", "not a subclass of"),
        (f"{HERE}.CHOSEN", "not a class"),
    ],
)
def test_bad_policy_is_a_usage_error(name: str, reason: str) -> None:
    """A name that is no RedirectPolicy subclass is one usage error naming the option."""
    with pytest.raises(usage.UsageError) as raised:
        parse("--redirect-policy", name)
    message = str(raised.value)
    assert message.startswith("--redirect-policy: ") and reason in message, message
