"""Run strongSwan's charon on loopback for tests and benchmarks (see
/work/shared/interop/strongswan/README.md): one private directory and one mount namespace per
instance, free ports, bounded waits, and the process always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CHARON = "/usr/lib/ipsec/charon"
PLUGINS = (
    "random nonce openssl pem pkcs1 x509 revocation constraints pubkey kdf socket-default "
    "kernel-netlink vici"
)

STRONGSWAN_CONF = """\
charon {{
  port = {port}
  port_nat_t = {port_nat_t}
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = {retransmit_tries}
  retransmit_timeout = 2
  {extra}
  load = {plugins}
  filelog {{
    test {{
      path = {dir}/charon.log
      time_format = %T
      default = {log_level}
      ike = {ike_level}
      net = {log_level}
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


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port free on every address (charon binds the wildcard address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        port: int = s.getsockname()[1]
        return port


def free_loopback_500(first: int = 150) -> str:
    """A 127.0.0.x address whose UDP port 500 is free (tests bind gateways there)."""
    for last in range(first, 250):
        host = f"127.0.0.{last}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((host, 500))
            except OSError:
                continue
            return host
    raise RuntimeError("no loopback address with a free port 500")


class Charon:
    """One charon daemon in its own directory and mount namespace."""

    def __init__(
        self,
        swanctl_conf: str,
        *,
        port: int | None = None,
        port_nat_t: int | None = None,
        extra: str = "",
        log_level: int = 1,
        ike_level: int = 2,
        retransmit_tries: int = 3,
    ) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="charon-")
        self.dir = Path(self.tmp.name)
        (self.dir / "run").mkdir()
        self.port = port if port is not None else free_udp_port()
        self.port_nat_t = port_nat_t if port_nat_t is not None else free_udp_port()
        self.conf = self.dir / "strongswan.conf"
        self.conf.write_text(
            STRONGSWAN_CONF.format(
                port=self.port,
                port_nat_t=self.port_nat_t,
                dir=self.dir,
                extra=extra,
                log_level=log_level,
                ike_level=ike_level,
                retransmit_tries=retransmit_tries,
                plugins=PLUGINS,
            )
        )
        (self.dir / "swanctl.conf").write_text(swanctl_conf)
        self.env = dict(os.environ, STRONGSWAN_CONF=str(self.conf))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        """charon's log so far."""
        path = self.dir / "charon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 10.0) -> None:
        """Start charon and load the configuration; raises if it does not come up."""
        script = f"mount --bind {self.dir}/run /run && exec {CHARON}"
        self.process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not (self.dir / "charon.vici").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"charon did not start:\n{self.log}")
            time.sleep(0.05)
        self.swanctl("--load-all", "--file", str(self.dir / "swanctl.conf"))

    def swanctl(self, *args: str, timeout: float = 20.0, check: bool = True) -> str:
        """Run swanctl against this charon; returns its output."""
        result = subprocess.run(
            ["swanctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise RuntimeError(f"swanctl {' '.join(args)} failed:\n{output}\n--- log:\n{self.log}")
        return output

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until ``text`` appears in the log; returns the log."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log
            if text in log:
                return log
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in charon log within {timeout}s:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop charon (by its PID) and remove its directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.tmp.cleanup()


@contextlib.contextmanager
def running(charon: Charon) -> Iterator[Charon]:
    """Start ``charon`` and always stop it."""
    try:
        charon.start()
        yield charon
    finally:
        charon.stop()
