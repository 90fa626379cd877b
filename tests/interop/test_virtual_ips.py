"""Interop: strongSwan 5.9.8 asks ``twistd -n vpngw --address-pool`` for a virtual IP.

charon (``vips = 0.0.0.0`` and/or ``::``) sends CP(CFG_REQUEST) in IKE_AUTH and gets its
address, DNS server and the protected subnet in the CFG_REPLY, with its TSi narrowed to the
address. charon runs with ``install_virtual_ip = no`` (tests/interop/charon.py): the
address is never put on a host interface. This kernel has no ESP: the CHILD_SA's install
fails in charon (as in the other interop tests); the IKE SA stays, and its DELETE frees the
address in vpngw.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.charon import Charon, free_loopback_500, running
from tests.interop.test_strongswan import (
    PSK,
    Gateway,
    gateway_factory,
    require_strongswan,
)

pytestmark = pytest.mark.interop

__all__ = ["gateway_factory"]


def client_conf(gateway: str, vips: str) -> str:
    return f"""connections {{ vip {{
  version = 2
  mobike = no
  local_addrs = 127.0.0.1
  remote_addrs = {gateway}
  remote_port = 500
  proposals = aes128-sha256-x25519
  vips = {vips}
  local {{ auth = psk
    id = client@test }}
  remote {{ auth = psk
    id = gw@test }}
  children {{ net {{ esp_proposals = aes128gcm16
    remote_ts = 198.51.100.0/24, 2001:db8:99::/64 }} }}
}} }}
secrets {{ ike-any {{ secret = "{PSK}" }} }}
"""


@pytest.mark.parametrize(
    ("vips", "expected"),
    [
        ("0.0.0.0", ["10.8.0.1"]),
        ("::", ["fd00:8::1"]),
        ("0.0.0.0, ::", ["10.8.0.1", "fd00:8::1"]),
    ],
)
def test_strongswan_gets_virtual_ip(
    vips: str, expected: list[str], tmp_path: Path, gateway_factory: list[Gateway]
) -> None:
    """charon installs the leased address(es) as its virtual IP, takes the DNS server, and
    its CHILD_SA has TSi narrowed to the address; its DELETE releases the lease."""
    require_strongswan()
    gw = Gateway(
        tmp_path,
        "--address-pool", "10.8.0.0/24", "--address-pool", "fd00:8::/64",
        "--subnet", "198.51.100.0/24", "--subnet", "2001:db8:99::/64",
        "--dns", "10.8.0.53", "--dns", "fd00:8::53",
    )  # fmt: skip
    gateway_factory.append(gw)
    with running(Charon(client_conf(gw.host, vips))) as charon:
        charon.swanctl("--initiate", "--child", "net", "--timeout", "10", check=False)
        for address in expected:
            clog = charon.wait_for_log(f"installing new virtual IP {address}")
            gw.wait_for_log(f"virtual IP {address} leased to client@test")
        assert "parsed IKE_AUTH response 1 [ IDr AUTH CPRP(ADDR" in clog
        for family in ("4", "6"):
            dns_expected = any((":" in a) == (family == "6") for a in expected)
            seen = f"processing INTERNAL_IP{family}_DNS attribute" in clog
            assert seen == dns_expected
        # Our side of the CHILD_SA: TSr the --subnet networks, TSi the leased address(es).
        gw.wait_for_log(f"=== {', '.join(expected)} with 127.0.0.1 recorded")
        sas = charon.swanctl("--list-sas")
        assert "ESTABLISHED" in sas and f"[{' '.join(expected)}]" in sas
        charon.swanctl("--terminate", "--ike", "vip", "--timeout", "10", check=False)
        for address in expected:
            gw.wait_for_log(f"virtual IP {address} of client@test released")


def test_logged_configuration_gets_a_virtual_ip(tmp_path: Path) -> None:
    """The swanctl.conf that vpngw logs with --address-pool (vips, remote_ts from --subnet,
    the generated key) is enough: charon loaded with it (one setting per line) gets a
    virtual IP."""
    require_strongswan()
    host = free_loopback_500()
    logfile = tmp_path / "vpngw.log"
    twistd = Path(sys.executable).parent / "twistd"
    process = subprocess.Popen(
        [
            str(twistd), "-n", "--pidfile=", f"--logfile={logfile}", "vpngw",
            "--listen", host, "--address-pool", "10.9.0.0/24", "--subnet", "198.51.100.0/24",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while "IKEv2 on udp" not in (log := logfile.read_text() if logfile.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline, log
            time.sleep(0.05)
        hint = log.split("connect with strongSwan (swanctl.conf):\n", 1)[1]
        # The logged hint as it is (twistd's log continues a message on tab-led lines).
        lines = itertools.takewhile(lambda line: line.startswith("\t"), hint.splitlines())
        conf = "\n".join(line[1:] for line in lines)
        # The key is not logged: the hint names its file, which the operator copies from.
        keyFile = tmp_path / "vpngw-state" / "generated.secrets"
        key = keyFile.read_text().split('"', 2)[1]
        conf = conf.replace(f"<the key in {keyFile}>", key)
        assert "vips = 0.0.0.0" in conf and "remote_ts = 198.51.100.0/24" in conf
        with running(Charon(conf)) as charon:
            charon.swanctl("--initiate", "--child", "net", "--timeout", "10", check=False)
            charon.wait_for_log("installing new virtual IP 10.9.0.1")
            assert "[10.9.0.1]" in charon.swanctl("--list-sas")
    finally:
        process.terminate()
        process.wait(timeout=10)
