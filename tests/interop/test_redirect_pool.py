"""Three ``twistd vpngw`` register in an RSerPool pool at a real ``twistd enrp`` (TLS-PSK);
a redirecting vpngw resolves the pool through the ASAP pool user (TLS, server certificate
verified) and sends each new client to the least loaded gateway; a gateway that dies stops
receiving clients.

The clients are our IKE core driven over real UDP sockets on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.enrp.support import EnrpProcess
from tests.interop.test_redirect_strongswan import VpnGw, free_tcp_port, loopback_hosts
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeSaEstablished, IkeSaFailed, IkeSaRedirected

pytestmark = pytest.mark.interop

POOL = "vpngw"


def status(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


def wait_until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Client:
    """An IKE initiator on a real UDP socket of 127.0.0.1, run until an SA is up."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        config = IkeConfig(
            Identity.parse("client@test"),
            PskTable(default=b"interop-psk"),
            remote_id=Identity.parse("gw@test"),
            childless="force",
            retransmit_timeout=0.5,
        )
        self.endpoint = IkeEndpoint(config, self.socket.getsockname())
        self.events: list[object] = []

    def connect(self, host: str, timeout: float = 10.0) -> tuple[str, list[str]]:
        """Establish an IKE SA starting at ``host``; (final gateway, redirect targets)."""
        start = time.monotonic()
        self.endpoint.initiate((host, 500), 0.0)
        while time.monotonic() - start < timeout:
            now = time.monotonic() - start
            for data, address in self.endpoint.datagrams_to_send():
                self.socket.sendto(data, address)
            try:
                data, address = self.socket.recvfrom(65535)
            except TimeoutError:
                self.events += self.endpoint.handle_timer(now)
                continue
            self.events += self.endpoint.receive_datagram(data, address, now)
            self.events += self.endpoint.handle_timer(now)
            ups = [e for e in self.events if isinstance(e, IkeSaEstablished)]
            if ups:
                redirects = [
                    str(e.new_gateway) for e in self.events if isinstance(e, IkeSaRedirected)
                ]
                return ups[-1].peer_address[0], redirects
            failed = [e for e in self.events if isinstance(e, IkeSaFailed)]
            assert not failed, failed
        raise AssertionError(f"no IKE SA within {timeout} s: {self.events}")

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def started() -> Iterator[list[Any]]:
    processes: list[Any] = []
    yield processes
    for process in reversed(processes):
        process.stop()


def test_pool_of_gateways(tmp_path: Path, started: list[Any]) -> None:
    """Each new client goes to the least loaded pool gateway (by the Least Used loads the
    gateways keep current at the ENRP server); a killed gateway gets no more clients."""
    from tests.interop.test_strongswan import require_strongswan

    require_strongswan()  # root, for port 500
    enrp = EnrpProcess(tmp_path / "enrp")
    started.append(enrp)
    enrp.start()
    g1, g2, g3, redirector = loopback_hosts(("127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"))
    gateways = {}
    for host in (g1, g2, g3):
        # The ENRP server accepts only the connection's own address: bind to the gateway's.
        registrar = f"{enrp.peEndpoint()}:bindAddress={host}"
        pool_args = ("--pool", POOL, "--pool-enrp", registrar, "--pool-interval", "0.3")
        gateways[host] = VpnGw(tmp_path, host, *pool_args)
        started.append(gateways[host])
    admin = free_tcp_port()
    r = VpnGw(
        tmp_path, redirector, "--redirect-always", "--redirect-pool", POOL,
        "--redirect-pool-enrp", enrp.puEndpoint(), "--pool-interval", "0.3",
        "--admin", f"tcp:{admin}:interface=127.0.0.1",
    )  # fmt: skip
    started.append(r)
    r.wait_for_log("IKEv2 on udp")

    def loads() -> dict[str, int]:
        return {g["address"]: g["load"] for g in status(admin)["pool"] or []}

    wait_until(lambda: set(loads()) == {g1, g2, g3}, "three gateways in the pool")
    clients: list[Client] = []
    try:
        # Load the pool unevenly: g1 holds two IKE SAs, g2 one, g3 none.
        for host in (g1, g1, g2):
            client = Client()
            clients.append(client)
            assert client.connect(host) == (host, [])
        wait_until(lambda: loads()[g1] > loads()[g2] > loads()[g3] == 0, "load updates")
        client = Client()
        clients.append(client)
        assert client.connect(redirector) == (g3, [g3])
        wait_until(lambda: loads()[g3] == loads()[g2] > 0, "g3's load update")
        client = Client()
        clients.append(client)
        served, _ = client.connect(redirector)
        assert served in (g2, g3)
        gateways[g3].process.kill()
        gateways[g3].process.wait(timeout=10)
        wait_until(lambda: g3 not in loads(), "the ENRP server to drop g3", timeout=30)
        for _ in range(3):
            client = Client()
            clients.append(client)
            served, targets = client.connect(redirector)
            assert served != g3 and g3 not in targets
        counted = status(admin)
        assert counted["ike_sas"] == 0 and counted["redirects"]["static"] == 5
    finally:
        for client in clients:
            client.close()
