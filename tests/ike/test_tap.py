"""``twistd vpngw``: options, help text, and the service it builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import IServiceMaker, MultiService
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python import usage
from zope.interface import implementer

from tests.ike.test_gateway import FakeReactor
from twisted_rserpool._tap import vpngw
from twisted_rserpool.ike.config import Identity
from twisted_rserpool.ike.gateway import IkeGatewayProtocol


def parse(*args: str) -> vpngw.Options:
    options = vpngw.Options()  # type: ignore[no-untyped-call]
    options.parseOptions(list(args))  # type: ignore[no-untyped-call]
    return options


def test_defaults() -> None:
    """Without options: 127.0.0.1 port 500, a generated key accepted for any identity."""
    options = parse()
    assert options["listen"] == "127.0.0.1" and options["port"] == 500
    assert options["identity"] == Identity.parse("vpngw@localhost")
    psk = options["generated_psk"]
    assert isinstance(psk, str) and len(psk) >= 24
    assert options["psks"].lookup(Identity.parse("anyone@example")) == psk.encode()
    assert parse()["generated_psk"] != psk


def test_every_option_is_explained() -> None:
    """--help describes every option, and the long description says when ESP is carried."""
    text = str(vpngw.Options())  # type: ignore[no-untyped-call]
    for name, _short, _default, help_text, *_ in vpngw.Options.optParameters:
        assert f"--{name}=" in text
        assert len(help_text) > 30
    assert "With --tun it carries their traffic" in vpngw.Options.longdesc


def test_options_converted(tmp_path: Path) -> None:
    """Options are converted: identity, suites, secrets file, limits and timers."""
    secrets = tmp_path / "secrets"
    secrets.write_text('alice@test : "a-key"\n')
    secrets.chmod(0o600)  # vpngw refuses a key file others may read
    options = parse(
        "--listen", "127.0.0.9, 127.0.0.10", "--port", "4500", "--nat-t-port", "4501",
        "--nat-keepalive-interval", "15", "--identity", "@gw.example",
        "--secrets", str(secrets), "--proposals", "aes256gcm16-prfsha384-ecp384",
        "--esp-proposals", "aes256-sha512", "--cookie-threshold", "0", "--max-sas", "7",
        "--max-half-open", "3", "--half-open-timeout", "5", "--liveness-interval", "9",
        "--childless", "never", "--rekey-interval", "3600",
    )  # fmt: skip
    assert options["port"] == 4500 and options["generated_psk"] is None
    assert options["psks"].lookup(Identity.parse("alice@test")) == b"a-key"
    assert options["psks"].lookup(Identity.parse("bob@test")) is None
    assert [str(s) for s in options["ike_suites"]] == ["aes256gcm16-prfsha384-ecp384"]
    assert [str(s) for s in options["child_suites"]] == ["aes256-sha512"]
    reactor = FakeReactor()
    service = vpngw.makeService(options, reactor)
    service.startService()  # type: ignore[no-untyped-call]
    ((port, protocol, interface, _), (_, other, interface2, _)) = reactor.listened
    assert (port, interface, interface2) == (4500, "127.0.0.9", "127.0.0.10")
    assert [(p, i) for p, _, i, _ in reactor.nat_listened] == [
        (4501, "127.0.0.9"),
        (4501, "127.0.0.10"),
    ]
    assert isinstance(protocol, IkeGatewayProtocol) and isinstance(other, IkeGatewayProtocol)
    assert protocol.endpoint.nat_t_port == 4501
    assert protocol.endpoint.config.nat_keepalive_interval == 15.0
    assert other.endpoint is not protocol.endpoint
    config = protocol.endpoint.config
    assert config.local_id == Identity.parse("@gw.example")
    assert (config.cookie_threshold, config.max_ike_sas, config.max_half_open) == (0, 7, 3)
    assert config.rekey_interval == 3600.0
    assert (config.half_open_timeout, config.liveness_interval, config.childless) == (
        5.0,
        9.0,
        "never",
    )
    service.stopService()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "localhost"],
        ["--listen", "127.0.0.1,127.0.0.1"],
        ["--listen", ","],
        ["--port", "70000"],
        ["--nat-t-port", "70000"],
        ["--port", "4500"],
        ["--nat-keepalive-interval", "-1"],
        ["--identity", " "],
        ["--proposals", "des-md5-modp768"],
        ["--esp-proposals", "aes128"],
        ["--childless", "force"],
        ["--secrets", "/nonexistent/secrets"],
        ["--cookie-threshold", "-1"],
        ["--half-open-timeout", "0"],
        ["--rekey-interval", "-5"],
    ],
)
def test_bad_options(args: list[str]) -> None:
    """Invalid values are refused with a usage error, not a traceback."""
    with pytest.raises(usage.UsageError):
        parse(*args)


def test_default_service_logs_how_to_connect() -> None:
    """makeService with no options listens on 127.0.0.1:500 and logs where the generated
    key is, with a strongSwan configuration that connects."""
    events: list[dict[str, Any]] = []

    @implementer(ILogObserver)
    def collect(event: dict[str, Any]) -> None:
        events.append(event)

    globalLogPublisher.addObserver(collect)
    try:
        options = parse()
        reactor = FakeReactor()
        service = vpngw.makeService(options, reactor)
    finally:
        globalLogPublisher.removeObserver(collect)
    assert isinstance(service, MultiService)
    service.startService()  # type: ignore[no-untyped-call]
    assert [(p, i) for p, _, i, _ in reactor.listened] == [(500, "127.0.0.1")]
    assert [(p, i) for p, _, i, _ in reactor.nat_listened] == [(4500, "127.0.0.1")]
    (hint,) = [e for e in events if e.get("keyFile") == str(options["generated_psk_file"])]
    assert "remote_addrs = 127.0.0.1" in hint["hint"] and "id = vpngw@localhost" in hint["hint"]
    assert options["generated_psk"] not in hint["hint"]
    service.stopService()  # type: ignore[no-untyped-call]


def test_plugin_is_found() -> None:
    """twistd finds the vpngw ServiceMaker, and it points at this module."""
    import twisted.plugins

    makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
    assert "vpngw" in makers
    assert issubclass(makers["vpngw"].options, vpngw.Options)
