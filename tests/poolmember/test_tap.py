"""``twistd poolmember``'s options and service, the member descriptions it reads, and the
registration it sends (and ``twistd vpngw --pool``'s), as tshark's ASAP dissector reads it."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from tests.conftest import requireTool
from tests.tools.tshark import asap_packet, dissect, field_values, problems
from twisted_rserpool._tap import commandOptions, poolmember, vpngw
from twisted_rserpool.poolmember.description import (
    FULL_LOAD,
    parsePolicy,
    parseTransport,
    transportText,
)
from twisted_rserpool.poolmember.registration import MemberRegistration
from twisted_rserpool.poolmember.sources import CommandLoad, FileLoad, UrlLoad
from twisted_rserpool.poolmember.viciload import ViciLoad
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.parameters import (
    LeastUsedDegradationPolicy,
    LeastUsedPolicy,
    PriorityPolicy,
    RoundRobinPolicy,
    SctpTransport,
    TcpTransport,
    UdpTransport,
)

ENRP = "tcp:host=127.0.0.1:port=1"


def memoryReactor() -> MemoryReactorClock:
    return MemoryReactorClock()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("text", "transport"),
    [
        ("udp:192.0.2.5:500", UdpTransport(500, ip_address("192.0.2.5"))),
        ("TCP:[2001:db8::5]:80", TcpTransport(80, ip_address("2001:db8::5"))),
        (
            "sctp:192.0.2.5,[2001:db8::5],192.0.2.5:3868",
            SctpTransport(3868, (ip_address("192.0.2.5"), ip_address("2001:db8::5"))),
        ),
        ("udp:0.0.0.0:4500", UdpTransport(4500, ip_address("0.0.0.0"))),
    ],
)
def test_transports(text: str, transport: Any) -> None:
    """Each transport text gives its RFC 5354 parameter (data only) and reads back."""
    assert parseTransport(text) == transport
    assert parseTransport(transportText(transport)) == transport


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("quic:192.0.2.5:443", "give udp|tcp|udplite|sctp"),
        ("udp:192.0.2.5", "give udp:ADDRESS:PORT"),
        ("udp:192.0.2.500:53", "'192.0.2.500' is not an IP address"),
        ("udp:500", "give udp:ADDRESS:PORT"),
        ("udp:192.0.2.5:0", "is not 1 to 65535"),
        ("udp:192.0.2.5:http", "is not a number"),
        ("udp:gw.example:500", "'gw.example' is not an IP address"),
        ("tcp:192.0.2.5,192.0.2.6:80", "only SCTP lists several addresses"),
    ],
)
def test_bad_transports(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parseTransport(text)


def test_policies() -> None:
    """Policy names with their argument; the load policies start at load 0."""
    assert parsePolicy("least-used") == LeastUsedPolicy(0)
    assert parsePolicy("round-robin") == RoundRobinPolicy()
    assert parsePolicy("priority:0x10") == PriorityPolicy(16)
    assert parsePolicy("least-used-degradation:0.5") == LeastUsedDegradationPolicy(
        0, round(FULL_LOAD / 2)
    )
    for bad, reason in (
        ("fastest", "unknown policy 'fastest'"),
        ("priority", "takes PRIORITY"),
        ("round-robin:3", "takes no argument"),
        ("weighted-random:-1", "not 0 to 4294967295"),
        ("least-used-degradation:2", "share of full load"),
    ):
        with pytest.raises(ValueError, match=reason):
            parsePolicy(bad)


def memberRegistration(service: object) -> MemberRegistration:
    """The registration among the services ``twistd poolmember`` runs (and its reload)."""
    (registration,) = [c for c in service if isinstance(c, MemberRegistration)]  # type: ignore[attr-defined]
    return registration


def parse(*args: str) -> poolmember.Options:
    options = commandOptions("poolmember", poolmember.Options)()
    options.parseOptions(["--pool", "gw", "--enrp", ENRP, *args])  # type: ignore[no-untyped-call]
    assert isinstance(options, poolmember.Options)
    return options


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ((), "--transport is required"),
        (("--transport", "udp:1.2.3:500"), "--transport: '1.2.3' is not an IP address"),
        (("--transport", "udp:1.2.3.4:500", "--policy", "x"), "--policy: unknown policy"),
        (
            ("--transport", "udp:1.2.3.4:500", "--load-file", "f", "--load-url", "http://x/"),
            "give one load source, not --load-file and --load-url",
        ),
        (("--transport", "udp:1.2.3.4:500", "--load-vici", "v"), "needs --load-capacity"),
        (("--transport", "udp:1.2.3.4:500", "--load-command", "no-such-cmd"), "not a command"),
        (("--transport", "udp:1.2.3.4:500", "--load-url", "file:///etc"), "http:// or https://"),
        (("--transport", "udp:1.2.3.4:500", "--load-interval", "0"), "--load-interval: must be"),
        (("--transport", "udp:1.2.3.4:500", "--load-threshold", "2"), "--load-threshold: must"),
        (("--transport", "udp:1.2.3.4:500", "--pe-identifier", "0"), "--pe-identifier: must"),
        (("--transport", "udp:1.2.3.4:500", "--vici-count", "all"), "--vici-count: one of"),
    ],
)
def test_option_errors_are_one_line(args: tuple[str, ...], line: str) -> None:
    """Every bad option is one ``twistd poolmember: ...`` line that names it."""
    with pytest.raises(SystemExit) as stopped:
        parse(*args)
    message = str(stopped.value.code)
    assert message.startswith("twistd poolmember: ") and "\n" not in message
    assert line in message


def test_no_enrp_server() -> None:
    options = commandOptions("poolmember", poolmember.Options)()
    with pytest.raises(SystemExit, match="--enrp is required"):
        options.parseOptions(["--pool", "gw", "--transport", "udp:1.2.3.4:500"])  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("args", "source"),
    [
        (("--load-command", "cat /proc/loadavg"), CommandLoad),
        (("--load-file", "/run/load"), FileLoad),
        (("--load-url", "http://127.0.0.1:8080/load"), UrlLoad),
        (("--load-vici", "/var/run/charon.vici", "--load-capacity", "100"), ViciLoad),
    ],
)
def test_sources(args: tuple[str, ...], source: type) -> None:
    """Each --load-* option gives its source; the element registers the transport
    without listening."""
    options = parse("--transport", "udp:192.0.2.5:500", *args)
    registration = memberRegistration(poolmember.makeService(options, memoryReactor()))
    assert isinstance(registration.source, source)
    assert registration.element.userTransport == UdpTransport(500, ip_address("192.0.2.5"))
    if source is CommandLoad:
        assert registration.source.argv[0].endswith("/cat")  # type: ignore[attr-defined]


def registrationBytes(registration: Any) -> bytes:
    """The ASAP_REGISTRATION ``registration``'s pool element sends to its home server."""
    registration.startService()
    core = registration.element.core
    assert core is not None, "the first reading registers"
    (send,) = core.home_connected(0.0)
    assert isinstance(send.message, asap.Registration)
    encoded: bytes = send.message.encode()
    registration.stopService()
    return encoded


def test_registrations_in_tshark(tmp_path: Path) -> None:
    """tshark's ASAP dissector reads both registrations cleanly: the sidecar's with its
    UDP user transport and Least Used load (fixed --load 0.25) and no ASAP transport, and
    ``twistd vpngw --pool``'s with a UDP transport naming its IKE address and port."""
    tshark = requireTool("tshark")
    member = parse(
        "--transport", "udp:192.0.2.5:4500", "--load", "0.25", "--pe-identifier", "0x1234"
    )  # fmt: skip
    sidecar = memberRegistration(poolmember.makeService(member, memoryReactor()))
    gateway = vpngw.makeService(
        _vpngw(
            tmp_path, "--listen", "192.0.2.7", "--port", "500", "--pool", "gw", "--pool-enrp", ENRP
        ),
        memoryReactor(),
    )
    (own,) = [c for c in gateway if isinstance(c, MemberRegistration)]  # type: ignore[attr-defined]
    payloads = [registrationBytes(sidecar), registrationBytes(own)]
    layers = dissect([asap_packet(p) for p in payloads], tshark=tshark)
    for packet in layers:
        assert problems(packet) == []
        assert field_values(packet, "asap.message_type") == ["1"]
    first, second = layers
    assert field_values(first, "asap.pool_element_pe_identifier") == ["0x00001234"]
    assert field_values(first, "asap.udp_transport_port") == ["4500"]
    assert field_values(first, "asap.ipv4_address") == ["192.0.2.5"]
    assert field_values(first, "asap.pool_member_selection_policy_type") == ["0x40000001"]
    (load,) = field_values(first, "asap.pool_member_selection_policy_load")
    assert abs(float(load) - 25.0) < 0.001
    assert field_values(first, "asap.tcp_transport_port") == []  # no ASAP transport
    assert field_values(second, "asap.udp_transport_port") == ["500"]
    assert field_values(second, "asap.ipv4_address") == ["192.0.2.7"]


def _vpngw(state: Path, *args: str) -> Any:
    """vpngw's options, its generated key going to ``state``."""
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(["--state-dir", str(state), *args])  # type: ignore[no-untyped-call]
    return options


def test_vpngw_pool_needs_no_listener(tmp_path: Path) -> None:
    """``vpngw --pool`` registers its first --listen address and --port over UDP and
    listens on no stream port for it."""
    reactor = memoryReactor()
    service = vpngw.makeService(
        _vpngw(
            tmp_path, "--listen", "127.0.0.5", "--port", "1500", "--pool", "gw", "--pool-enrp", ENRP
        ),
        reactor,
    )
    (own,) = [c for c in service if isinstance(c, MemberRegistration)]  # type: ignore[attr-defined]
    assert own.element.userTransport == UdpTransport(1500, ip_address("127.0.0.5"))
    own.startService()
    assert own.element.running and reactor.tcpServers == []
    own.stopService()
    with pytest.raises(usage.UsageError):
        _vpngw(tmp_path, "--pool-transport", "tcp:0")
