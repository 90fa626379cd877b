"""Interop with a real libreswan 4.10 (pluto) as the initiator, PSK, to ``twistd -n vpngw``.

Each test builds its own path: a client network namespace, where pluto runs (in its own
mount and pid namespaces too, tests/interop/pluto.py), joined by a veth pair to a gateway
namespace, where ``twistd -n vpngw`` runs on 192.0.2.2 (and a second one on 192.0.2.3 for
the redirect); TEST-NET-1 addresses, only inside the namespaces, removed afterwards.
This kernel has no ESP: pluto negotiates the CHILD_SA, fails to install it and tears the
connection down, so the tests of liveness, rekeys and delete use pluto's
``--impair omit-v2-ike-auth-child`` for a stable IKE SA without a CHILD_SA.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.pluto import Link, Pluto, require_libreswan, wait_until

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PSK = "libreswan-interop-psk-0123456789abcdef"
CLIENT = "192.0.2.1"
GATEWAY = "192.0.2.2"
GATEWAY_B = "192.0.2.3"

SETUP = """\
config setup
    listen={client}
    logfile={{dir}}/pluto.log
    logtime=yes
    plutodebug=none
    dumpdir={{dir}}

"""

CONN = """\
conn vpn
    ikev2=insist
    authby=secret
    left={client}
    leftid=client@test
    leftsubnet=10.1.0.0/16
    right={gateway}
    rightid=gw@test
    rightsubnet=10.2.0.0/16
    auto=add
{extra}
"""


def pluto_conf(gateway: str = GATEWAY, **options: str) -> str:
    extra = "".join(f"    {key.replace('_', '-')}={value}\n" for key, value in options.items())
    return SETUP.format(client=CLIENT) + CONN.format(client=CLIENT, gateway=gateway, extra=extra)


class Gateway:
    """``twistd -n vpngw`` on ``address`` in namespace ``ns``; stopped by its PID."""

    def __init__(self, tmp: Path, ns: str, address: str, *extra: str) -> None:
        self.logfile = tmp / f"vpngw-{address}.log"
        secrets = tmp / "secrets"
        secrets.write_text(f'client@test : "{PSK}"\n')
        secrets.chmod(0o600)  # vpngw refuses a key file others may read
        twistd = Path(sys.executable).parent / "twistd"
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(twistd), "-n", "--pidfile=",
             f"--logfile={self.logfile}", "vpngw", "--listen", address, "--port", "500",
             "--secrets", str(secrets), "--identity", "gw@test", *extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.wait_for_log("IKEv2 on udp")

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        def done(log: str) -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"vpngw exited:\n{log}")
            return text in log

        return wait_until(f"{text!r} not in the vpngw log", lambda: self.log, done, timeout)

    def count(self, text: str) -> int:
        return self.log.count(text)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


class Setup:
    """The path, the gateways and pluto of one test; everything stopped at the end."""

    def __init__(self, link: Link, tmp: Path) -> None:
        self.link = link
        self.tmp = tmp
        self.gateways: list[Gateway] = []
        self.plutos: list[Pluto] = []

    def pluto(self, conf: str, *options: str) -> Pluto:
        pluto = Pluto(self.link.client_ns, conf, f'%any %any : PSK "{PSK}"\n', *options)
        self.plutos.append(pluto)
        pluto.start()  # never "whack --listen" afterwards: it rebinds port 500
        return pluto

    def gateway(self, address: str, *extra: str) -> Gateway:
        gateway = Gateway(self.tmp, self.link.gateway_ns, address, *extra)
        self.gateways.append(gateway)
        return gateway

    def stop(self) -> None:
        for pluto in self.plutos:
            pluto.stop()
        for gateway in self.gateways:
            gateway.stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    require_libreswan()
    with Link(CLIENT, (GATEWAY, GATEWAY_B)) as link:
        s = Setup(link, tmp_path)
        try:
            yield s
        finally:
            s.stop()


def _established(output: str) -> None:
    assert "initiator established IKE SA" in output, output
    assert "authenticated peer using authby=secret and ID_USER_FQDN 'gw@test'" in output, output


def test_pluto_ike_sa_and_child_sa(setup: Setup) -> None:
    """pluto with its default proposals establishes an IKE SA and negotiates a CHILD_SA with
    the narrowed selectors; only installing it fails (the kernel has no ESP)."""
    gateway = setup.gateway(GATEWAY)
    pluto = setup.pluto(pluto_conf())
    output = pluto.whack("--name", "vpn", "--initiate")
    _established(output)
    log = gateway.wait_for_log("recorded (no ESP data plane installed)")
    assert "established with client@test at ('192.0.2.1', 500)" in log
    assert re.search(
        r"CHILD_SA \S+ \S+ 10\.2\.0\.0-10\.2\.255\.255 === 10\.1\.0\.0-10\.1\.255\.255", log
    ), log
    # The CHILD_SA was agreed: pluto got as far as asking the kernel to install it.
    assert "netlink response for Add SA esp." in output, output


def _serial(pattern: str, output: str) -> str:
    found = re.search(pattern, output)
    assert found is not None, output
    return found.group(1)


def test_pluto_liveness_rekey_and_delete(setup: Setup) -> None:
    """A childless IKE SA: pluto's liveness check is answered (pluto schedules its own only
    on CHILD_SAs, so whack starts one); pluto rekeys the IKE SA, the new one carries a
    liveness check, and pluto's DELETE removes it."""
    gateway = setup.gateway(GATEWAY, "--liveness-interval", "0")
    pluto = setup.pluto(pluto_conf(), "--impair", "omit-v2-ike-auth-child")
    output = pluto.whack("--name", "vpn", "--initiate")
    _established(output)
    ike = _serial(r'"vpn" #(\d+): initiator established IKE SA', output)
    assert f"initiating liveness for #{ike}" in pluto.whack(
        "--impair", f"initiate-v2-liveness:{ike}"
    )
    gateway.wait_for_log("answering a liveness check of IKE SA")
    output = pluto.whack("--name", "vpn", "--rekey-ike")
    assert "initiator rekeyed IKE SA" in output, output
    rekeyed = _serial(r'"vpn" #(\d+): initiator rekeyed IKE SA', output)
    log = gateway.wait_for_log(" rekeyed to ")
    new = re.findall(r"rekeyed to ([0-9a-f]{16}/[0-9a-f]{16})", log)[-1]
    pluto.whack("--impair", f"initiate-v2-liveness:{rekeyed}")
    gateway.wait_for_log(f"answering a liveness check of IKE SA {new}")
    output = pluto.whack("--name", "vpn", "--delete")
    assert "sending notification" in output, output
    gateway.wait_for_log(f"IKE SA {new} deleted by ('192.0.2.1', 500)")


def test_gateway_liveness_and_rekey(setup: Setup) -> None:
    """The gateway's own liveness checks (on by default; 1 s here) are answered by pluto, and
    the gateway's rekey of the IKE SA (--rekey-interval) is accepted by pluto as responder."""
    gateway = setup.gateway(GATEWAY, "--liveness-interval", "1", "--rekey-interval", "3")
    pluto = setup.pluto(pluto_conf(), "--impair", "omit-v2-ike-auth-child")
    _established(pluto.whack("--name", "vpn", "--initiate"))
    gateway.wait_for_log("liveness check of IKE SA")
    assert "answered by ('192.0.2.1', 500)" in gateway.wait_for_log("answered by")
    gateway.wait_for_log(" rekeyed to ", timeout=30)
    pluto.wait_for_log("responder rekeyed IKE SA")
    log = gateway.log
    new = re.findall(r"rekeyed to ([0-9a-f]{16}/[0-9a-f]{16})", log)[0]
    wait_until(
        "no answered liveness check on the rekeyed IKE SA",
        lambda: gateway.log,
        lambda text: f"liveness check of IKE SA {new} answered" in text,
    )
    output = pluto.whack("--name", "vpn", "--delete")
    assert "STATE_V2_ESTABLISHED_IKE_SA" in output and "sending notification" in output, output
    gateway.wait_for_log("deleted by ('192.0.2.1', 500)")


@pytest.mark.parametrize(
    ("exchange", "flags"),
    [("IKE_SA_INIT", ()), ("IKE_AUTH", ("--redirect-in-auth",))],
)
def test_pluto_follows_redirect(setup: Setup, exchange: str, flags: tuple[str, ...]) -> None:
    """A gateway with --redirect-always redirects pluto (accept-redirect=yes) in IKE_SA_INIT
    or, after authenticating it, in IKE_AUTH (RFC 5685 sections 5-6); pluto establishes
    with the second gateway (IKE SA and CHILD_SA) and tells it where it came from
    (REDIRECTED_FROM)."""
    redirector = setup.gateway(GATEWAY, "--redirect-always", *flags, "--redirect-to", GATEWAY_B)
    second = setup.gateway(GATEWAY_B)
    pluto = setup.pluto(pluto_conf(accept_redirect="yes", accept_redirect_to=GATEWAY_B))
    pluto.whack("--name", "vpn", "--initiate")
    log = second.wait_for_log("recorded (no ESP data plane installed)")
    assert f"was redirected here from {GATEWAY}" in log
    assert "established with client@test" in log
    plog = pluto.wait_for_log("initiator established IKE SA")
    assert f"initiating {exchange} redirect to new gateway (address: {GATEWAY_B})" in plog
    if exchange == "IKE_SA_INIT":
        assert "established" not in redirector.log
    else:
        # Authenticated first, then redirected; pluto deletes the redirected IKE SA.
        rlog = redirector.wait_for_log("redirecting authenticated client client@test")
        assert "established" not in rlog
        redirector.wait_for_log("deleted by ('192.0.2.1', 500)")
