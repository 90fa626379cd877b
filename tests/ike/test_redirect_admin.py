"""``twistd vpngw`` redirect options and the admin interface's commands (no sockets)."""

from __future__ import annotations

import json
from io import BytesIO
from ipaddress import IPv4Address
from typing import Any

import pytest
from twisted.application.service import MultiService
from twisted.python import usage
from twisted.web.test.requesthelper import DummyRequest

from tests.ike.test_gateway import FakeReactor
from tests.ike.test_redirect import B, C, Net
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.admin import GatewayAdminResource
from twisted_rserpool.ike.gateway import IkeGatewayProtocol, IkeUdpService
from twisted_rserpool.ike.redirect import RedirectPolicy, StaticGateways


def parse(*args: str) -> vpngw.Options:
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(list(args))  # type: ignore[no-untyped-call]
    return options


def test_redirect_options() -> None:
    """The redirect options build one policy shared by every listen address: weighted
    targets, thresholds, anycast, drain, the REDIRECTED_FROM allow-list and timeout."""
    options = parse(
        "--listen", "127.0.0.9,127.0.0.10",
        "--redirect-to", "127.0.0.3=2, 2001:db8::4, vpn.example",
        "--redirect-max-sas", "10", "--redirect-max-load", "0.5", "--anycast", "127.0.0.10",
        "--unicast", "127.0.0.9", "--drain", "--redirected-from-allowed", "127.0.0.2",
        "--redirect-delete-timeout", "7", "--redirect-in-auth",
    )  # fmt: skip
    service = vpngw.makeService(options, FakeReactor())
    assert isinstance(service, MultiService)
    protocols = [s.protocol for s in service if isinstance(s, IkeUdpService)]
    policies = {id(p.endpoint.redirect_policy) for p in protocols}
    assert len(policies) == 1
    policy = protocols[0].endpoint.redirect_policy
    assert isinstance(policy, RedirectPolicy) and isinstance(policy.source, StaticGateways)
    assert [str(g) for g in policy.source.gateways()] == ["127.0.0.3", "2001:db8::4", "vpn.example"]
    assert policy.max_ike_sas == 10 and policy.max_load == 0.5 and policy.draining
    assert policy.anycast == frozenset({"127.0.0.10"}) and policy.in_auth
    assert str(policy.unicast) == "127.0.0.9"
    config = protocols[0].endpoint.config
    assert config.redirected_from_allowed == frozenset({"127.0.0.2"})
    assert config.redirect_delete_timeout == 7.0
    assert policy.load is not None and policy.load() == 0.0


def test_no_policy_without_redirect_options() -> None:
    """Without redirect options the gateway never redirects."""
    service = vpngw.makeService(parse(), FakeReactor())
    (udp,) = [s for s in service if isinstance(s, IkeUdpService)]  # type: ignore[attr-defined]
    assert udp.protocol.endpoint.redirect_policy is None


@pytest.mark.parametrize(
    "args",
    [
        ("--redirect-always",),
        ("--drain",),
        ("--redirect-to", "not a name"),
        ("--anycast", "vpn.example", "--redirect-to", "127.0.0.3"),
        ("--redirect-to", "127.0.0.3=0"),
    ],
)
def test_bad_redirect_options(args: tuple[str, ...]) -> None:
    """Rules without targets, malformed gateways, anycast names and zero weights are
    refused."""
    with pytest.raises(usage.UsageError):
        parse(*args)


TOKEN = "token-of-the-tests"


def request(
    resource: GatewayAdminResource, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One request with the token (and, for a POST, a JSON body): status and JSON answer."""
    req: Any = DummyRequest([p.encode() for p in path.strip("/").split("/")])
    req.method = method.encode()
    req.path = path.encode()
    req.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + TOKEN.encode()])
    req.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    req.content = BytesIO(json.dumps(body).encode() if body is not None else b"")
    data = resource.render(req)
    return req.responseCode or 200, json.loads(data)


class Wire:
    """A transport that hands the gateway's datagrams to the in-memory network."""

    def __init__(self, net: Net) -> None:
        self.net = net

    def write(self, data: bytes, address: tuple[str, int]) -> None:
        self.net.log.append((B, address, data))
        node = self.net.nodes.get(address)
        if node is not None:
            self.net.events[address] += node.receive_datagram(data, B, 5.0)


def admin_net() -> tuple[Net, GatewayAdminResource, RedirectPolicy]:
    net = Net()
    policy = RedirectPolicy(StaticGateways([IPv4Address("127.0.0.4")]))
    gw = net.add(B, policy=policy)
    net.add(C)
    net.client.initiate(B, 0.0)
    net.pump()
    reactor = FakeReactor()
    reactor.advance(5.0)
    protocol = IkeGatewayProtocol(gw, reactor)
    protocol.transport = Wire(net)  # type: ignore[assignment]
    return net, GatewayAdminResource([protocol], policy, reactor, token=TOKEN), policy


def test_admin_status_and_redirect_one() -> None:
    """/status lists the SAs and counters; /redirect moves one client by address."""
    net, admin, _policy = admin_net()
    code, status = request(admin, "GET", "/status")
    assert code == 200 and status["ike_sas"] == 1 and status["targets"] == ["127.0.0.4"]
    (sa,) = status["endpoints"][0]["sas"]
    assert sa["peer_id"] == "client@test" and sa["redirect_supported"]
    code, answer = request(admin, "POST", "/redirect", {"peer": "127.0.0.1", "target": "127.0.0.4"})
    assert code == 200 and answer["moved"] == 1
    net.pump(5.0)
    code, status = request(admin, "GET", "/status")
    assert status["ike_sas"] == 0 and status["redirects"] == {"admin": 1}
    assert net.nodes[C].redirected_from == {"127.0.0.3": 1}


def test_admin_drain_and_targets() -> None:
    """/targets replaces the list; /drain sets draining and moves established clients to
    the new targets."""
    net, admin, policy = admin_net()
    code, answer = request(admin, "POST", "/targets", {"targets": ["127.0.0.4", "vpn.example"]})
    assert code == 200 and answer == {"targets": ["127.0.0.4", "vpn.example"]}
    code, answer = request(admin, "POST", "/drain", {"drain": True})
    assert code == 200 and answer == {"draining": True, "moved": 1} and policy.draining
    net.pump(5.0)
    assert len(net.nodes[C]) == 1
    code, answer = request(admin, "POST", "/drain", {"drain": False})
    assert answer == {"draining": False, "moved": 0} and not policy.draining


@pytest.mark.parametrize(
    "path,body",
    [
        ("/redirect", {"target": "127.0.0.4"}),
        ("/redirect", {"peer": "127.0.0.1"}),
        ("/redirect", {"peer": "127.0.0.99", "target": "127.0.0.4"}),
        ("/targets", {"targets": "127.0.0.4"}),
        ("/targets", {"targets": ["127.0.0.4"], "weights": [0]}),
        ("/redirect", ["not an object"]),
        ("/nowhere", {}),
    ],
)
def test_admin_errors(path: str, body: Any) -> None:
    """Malformed or impossible commands are answered 4xx with an error."""
    _net, admin, _policy = admin_net()
    code, answer = request(admin, "POST", path, body)
    assert code in (400, 404) and "error" in answer


def test_pool_options() -> None:
    """--pool registers through every --pool-enrp; --redirect-pool takes the targets from
    the pool through --redirect-pool-enrp; both build their services."""
    from twisted_rserpool.ike.redirect_pool import (
        GatewayRegistration,
        PoolGateways,
    )

    options = parse(
        "--listen", "127.0.0.5", "--pool", "vpngw", "--pool-enrp", "tcp:host=127.0.0.1:port=1",
        "--pool-enrp", "tcp:host=127.0.0.1:port=2", "--redirect-pool", "vpngw",
        "--redirect-pool-enrp", "tcp:host=127.0.0.1:port=3", "--redirect-max-sas", "5",
    )  # fmt: skip
    assert options["pool-enrp"] == ["tcp:host=127.0.0.1:port=1", "tcp:host=127.0.0.1:port=2"]
    service = vpngw.makeService(options, FakeReactor())
    children = list(service)  # type: ignore[call-overload]
    (source,) = [c for c in children if isinstance(c, PoolGateways)]
    (registration,) = [c for c in children if isinstance(c, GatewayRegistration)]
    assert source.poolHandle == b"vpngw" and registration.element.poolHandle == b"vpngw"
    (udp,) = [c for c in children if isinstance(c, IkeUdpService)]
    policy = udp.protocol.endpoint.redirect_policy
    assert isinstance(policy, RedirectPolicy) and policy.source is source
    for bad in (
        ("--pool", "vpngw"),
        ("--redirect-pool", "vpngw"),
        ("--redirect-pool", "p", "--redirect-pool-enrp", "tcp:h:1", "--redirect-to", "1.2.3.4"),
    ):
        with pytest.raises(usage.UsageError):
            parse(*bad)
