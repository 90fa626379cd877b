"""Run libreswan's pluto (4.10) beside strongSwan for tests (../shared/interop/libreswan).

Debian's libreswan package conflicts with strongSwan's, so scripts/bootstrap.sh unpacks it
into ``.cache/libreswan/root`` (``TWISTED_RSERPOOL_LIBRESWAN``). pluto runs there in its own
mount and pid namespaces, inside a network namespace the test made: the unpacked
``libexec`` is overlaid on ``/usr/libexec`` (pluto runs a hard-coded
``/usr/libexec/ipsec/addconn``) and a private directory is bind-mounted on ``/run``.
``whack`` talks to it over the control socket in the instance's directory. Everything is
stopped by the process group of the process we started, and goes with the namespaces.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import interopRequired, requireTool

ROOT = Path(__file__).resolve().parents[2]
LIBRESWAN = Path(
    os.environ.get("TWISTED_RSERPOOL_LIBRESWAN") or ROOT / ".cache" / "libreswan" / "root"
)
PLUTO = LIBRESWAN / "usr/libexec/ipsec/pluto"
WHACK = LIBRESWAN / "usr/libexec/ipsec/whack"
_serial = itertools.count()


def require_libreswan() -> None:
    """pluto unpacked, ip, unshare and certutil present, and root; missing pieces fail where
    interop is required and skip elsewhere."""
    for tool in ("ip", "unshare", "certutil"):
        requireTool(tool)
    problem = None
    if not PLUTO.exists() or not WHACK.exists():
        problem = f"libreswan is not unpacked in {LIBRESWAN} (scripts/bootstrap.sh does it)"
    elif os.geteuid() != 0:
        problem = "pluto needs root (its own mount, pid and network namespaces)"
    if problem is not None:
        if interopRequired():
            pytest.fail(problem)
        pytest.skip(problem)


def run(*args: str, timeout: float = 20.0) -> str:
    """Run a command; its output, or an error with it."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout


class Link:
    """Two network namespaces (names with our pid) joined by a veth pair: the client side
    gets ``client``, the gateway side every address of ``gateways`` (TEST-NET-1, only inside
    them). Deleted, with the veth pair, whatever happens."""

    def __init__(self, client: str, gateways: tuple[str, ...]) -> None:
        tag = f"{os.getpid() % 100000}{next(_serial)}"
        self.client_ns = f"lswc{tag}"
        self.gateway_ns = f"lswg{tag}"
        self.client = client
        self.gateways = gateways
        self._made: list[str] = []

    def __enter__(self) -> Link:
        atexit.register(self.remove)
        try:
            for ns in (self.client_ns, self.gateway_ns):
                run("ip", "netns", "add", ns)
                self._made.append(ns)
            a, b = f"v{self.client_ns}", f"v{self.gateway_ns}"
            run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            run("ip", "link", "set", a, "netns", self.client_ns)
            run("ip", "link", "set", b, "netns", self.gateway_ns)
            run("ip", "-n", self.client_ns, "addr", "add", f"{self.client}/24", "dev", a)
            for address in self.gateways:
                run("ip", "-n", self.gateway_ns, "addr", "add", f"{address}/24", "dev", b)
            for ns, device in ((self.client_ns, a), (self.gateway_ns, b)):
                run("ip", "-n", ns, "link", "set", device, "up")
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Delete the namespaces (the veth pair goes with them)."""
        while self._made:
            subprocess.run(
                ["ip", "netns", "del", self._made.pop()], check=False, capture_output=True
            )


def wait_until(
    what: str, read: Callable[[], str], done: Callable[[str], bool], timeout: float = 20.0
) -> str:
    """Poll ``read()`` until ``done`` holds for it (bounded); returns what was read."""
    deadline = time.monotonic() + timeout
    while not done(text := read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s; got:\n{text[-4000:]}")
        time.sleep(0.05)
    return text


class Pluto:
    """One pluto in network namespace ``ns``, with its own directory, configuration
    (``ipsec.conf`` text, ``config setup`` included) and PSK secrets."""

    def __init__(self, ns: str, ipsec_conf: str, secrets: str, *options: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="pluto-")
        self.dir = Path(self.tmp.name)
        (self.dir / "run").mkdir()
        (self.dir / "nss").mkdir()
        self.ns = ns
        self.conf = self.dir / "ipsec.conf"
        self.conf.write_text(ipsec_conf.format(dir=self.dir))
        (self.dir / "ipsec.secrets").write_text(secrets)
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        """pluto's log so far."""
        path = self.dir / "pluto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, timeout: float = 15.0) -> None:
        """Start pluto (before anything binds UDP 500 in its namespace: its interface scan
        binds it); raises if its control socket does not appear."""
        run("certutil", "-N", "-d", f"sql:{self.dir}/nss", "--empty-password")
        d = self.dir
        pluto = (
            f"exec {PLUTO} --nofork --config {self.conf} --rundir {d} --nssdir {d}/nss "
            f"--secretsfile {d}/ipsec.secrets --ipsecdir {d} --no-dnssec " + " ".join(self.options)
        )
        script = (
            f"mount -t overlay overlay -o lowerdir={LIBRESWAN}/usr/libexec:/usr/libexec "
            f"/usr/libexec && mount --bind {d}/run /run && {pluto}"
        )
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--mount", "--pid", "--fork",
             "--kill-child", "--mount-proc", "--propagation", "private", "--",
             "sh", "-c", script],
            stdout=(d / "pluto.out").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (d / "pluto.ctl").exists() or "listening for IKE messages" not in self.log:
            if self.process.poll() is not None or time.monotonic() > deadline:
                out = (d / "pluto.out").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"pluto did not start:\n{out}\n{self.log}")
            time.sleep(0.05)

    def whack(self, *args: str, timeout: float = 30.0) -> str:
        """Run whack against this pluto; its output (whack fails on a failed command)."""
        result = subprocess.run(
            [str(WHACK), "--ctlsocket", str(self.dir / "pluto.ctl"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return result.stdout + result.stderr

    def wait_for_log(self, text: str, timeout: float = 20.0) -> str:
        """Wait until ``text`` is in pluto's log; returns the log."""
        return wait_until(f"{text!r} not in pluto's log", lambda: self.log, lambda t: text in t,
                          timeout)  # fmt: skip

    def stop(self) -> None:
        """Kill the process group we started (unshare ignores SIGTERM; pluto, the init of
        its pid namespace, dies with it), then remove the directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.tmp.cleanup()
