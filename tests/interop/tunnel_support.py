"""What the real-tunnel tests share: charon with kernel-libipsec in a namespace, processes
run in namespaces and stopped by PID, the tools they need, and charon's CHILD_SA counters."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import interopRequired, requireTool
from tests.interop.test_fragments import NamespacedCharon
from tests.interop.test_strongswan import require_strongswan

ROOT = Path(__file__).resolve().parents[2]
LIBIPSEC = Path("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so")

# kernel-libipsec must be loaded before kernel-netlink (else xfrm is used, and fails here).
PLUGINS = (
    "random nonce openssl pem pkcs1 x509 revocation constraints pubkey kdf socket-default "
    "kernel-libipsec kernel-netlink vici"
)
CLIENT_STRONGSWAN_CONF = """\
charon {{
  port = 500
  port_nat_t = 4500
  install_routes = yes
  install_virtual_ip = yes
  retransmit_tries = 2
  retransmit_timeout = 2
  load = {plugins}
  filelog {{
    test {{
      path = {dir}/charon.log
      time_format = %T
      default = 1
      ike = 2
      knl = 2
      esp = 1
      flush_line = yes
    }}
  }}
  syslog {{ daemon {{ default = -1 }} }}
  plugins {{
    vici {{ socket = unix://{dir}/charon.vici }}
    socket-default {{ use_ipv6 = no }}
  }}
}}
swanctl {{
  socket = unix://{dir}/charon.vici
  load = pem pkcs1 x509 revocation constraints pubkey openssl random
}}
"""


def run(*args: str, check: bool = True, timeout: float = 20) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout).stdout


class LibipsecCharon(NamespacedCharon):
    """charon with kernel-libipsec: its virtual IP and routes on its own TUN (ipsec0)."""

    def __init__(self, ns: str, swanctl_conf: str) -> None:
        super().__init__(ns, swanctl_conf)
        self.conf.write_text(CLIENT_STRONGSWAN_CONF.format(dir=self.dir, plugins=PLUGINS))


class Process:
    """A command in a namespace, stopped by its PID."""

    def __init__(self, ns: str, args: list[str], logfile: Path) -> None:
        self.logfile = logfile
        with logfile.open("ab") as out:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", ns, *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in {self.logfile.name}:\n{log}")
            time.sleep(0.05)
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def require_tunnel_tools() -> None:
    require_strongswan()
    for tool in ("ip", "ping", "curl", "ss"):
        requireTool(tool)
    problem = None
    if not LIBIPSEC.exists():
        problem = "strongSwan's kernel-libipsec plugin (libcharon-extra-plugins) is missing"
    elif not Path("/dev/net/tun").exists():
        problem = "no /dev/net/tun"
    if problem is not None:
        if interopRequired():
            pytest.fail(problem)
        pytest.skip(problem)


def client_counters(listing: str) -> dict[str, tuple[int, int]]:
    """charon's CHILD_SA counters from ``swanctl --list-sas``: direction -> (bytes, packets)."""
    found = {
        direction: (int(octets), int(packets))
        for direction, octets, packets in re.findall(
            r"^\s+(in|out)\s+[0-9a-f]{8}[^,]*,\s+(\d+) bytes,\s+(\d+) packets", listing, re.M
        )
    }
    assert set(found) == {"in", "out"}, listing
    return found
