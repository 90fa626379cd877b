"""A partitioned minority never takes over (RFC 5353 3.5.1), against three real ``twistd
-n enrp`` processes over TLS-PSK: every ENRP link of server 1 runs through a TCP forwarder
in the test that can stop forwarding while keeping the connections open (a blackhole).
Every process is killed in a cleanup; every wait is bounded."""

from __future__ import annotations

import contextlib
import selectors
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.enrp.support import LOOPBACK, readLog
from tests.enrp.test_pool_processes import ENRP_KEY, Pool, Server, waitUntil
from twisted_rserpool.security.psk import writePskFile

pytestmark = pytest.mark.slow

#: Not the pool's ENRP key.
WRONG_KEY = bytes(reversed(ENRP_KEY))

#: The bound of each wait for the servers (generous: a loaded machine is slow).
LIMIT = 30.0
#: How many takeovers of each other server server 1 must abandon before the heal.
ROUNDS = 2


class Blackhole:
    """TCP forwarders on loopback that drop every byte, both ways, while :attr:`cut`.

    They run in a thread of their own: the test's blocking calls (starting processes and
    PEs, the admin queries) stall its reactor for seconds on a loaded machine, which must
    not stall server 1's links (a stall longer than MAX-TIME-LAST-HEARD is a partition
    of its own, before the cut)."""

    def __init__(self) -> None:
        self.cut = False
        self.dropped = 0
        self.forwarded = 0
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        self._wake, self._waker = socket.socketpair()
        self._selector.register(self._wake, selectors.EVENT_READ, None)
        self._running = True
        self._thread = threading.Thread(target=self._run, name="blackhole", daemon=True)
        self._thread.start()

    def forwarder(self, target: int) -> int:
        """Listen on a free port and forward what arrives to ``target``; the port."""
        listener = socket.create_server((LOOPBACK, 0))
        self._sockets.append(listener)
        self._selector.register(listener, selectors.EVENT_READ, target)
        port: int = listener.getsockname()[1]
        return port

    def _run(self) -> None:
        while self._running:
            for key, _ in self._selector.select():
                if key.fileobj is self._wake:
                    return
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if isinstance(key.data, int):
                    self._accept(sock, key.data)
                else:
                    self._carry(sock, key.data)

    def _accept(self, listener: socket.socket, target: int) -> None:
        inside, _ = listener.accept()
        try:
            outside = socket.create_connection((LOOPBACK, target), timeout=5)
        except OSError:  # the server is not listening yet: the connecting one retries
            inside.close()
            return
        outside.settimeout(None)
        self._sockets += [inside, outside]
        self._selector.register(inside, selectors.EVENT_READ, outside)
        self._selector.register(outside, selectors.EVENT_READ, inside)

    def _carry(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            data = source.recv(65536)
        except OSError:
            data = b""
        if not data:
            for sock in (source, destination):
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
                sock.close()
            return
        if self.cut:
            self.dropped += len(data)
            return
        self.forwarded += len(data)
        with contextlib.suppress(OSError):
            destination.sendall(data)

    def close(self) -> None:
        """Stop the thread and reset every connection."""
        self._running = False
        self._waker.send(b"x")
        self._thread.join(timeout=5)
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self._wake.close()
        self._waker.close()
        self._selector.close()


class ProxiedPool(Pool):
    """A pool whose connections between server 1 and the others go through forwarders."""

    def __init__(self, directory: Path, count: int, hole: Blackhole) -> None:
        super().__init__(directory, count)
        first = self.servers[0]
        #: (identity connecting, server number connected to) -> forwarder port
        self.routes: dict[tuple[str, int], int] = {}
        for other in self.servers[1:]:
            self.routes[("enrp-1", other.number)] = hole.forwarder(other.enrpPort)
            self.routes[(f"enrp-{other.number}", 1)] = hole.forwarder(first.enrpPort)

    def serverPsk(self, server: Server) -> Path:
        """Server 1's --enrp-psk-file holds a wrong key, so that it never links to the
        others directly: a server a peer names (the others' real ports, in their peer
        lists) is a link through that file, which the others refuse. Its --peer links,
        through the forwarders, carry the right key (see :meth:`peerString`)."""
        if server is not self.servers[0]:
            return super().serverPsk(server)
        psk = self.directory / "enrp-client-1-wrong.psk"
        if not psk.exists():
            writePskFile(psk, {"enrp-1": WRONG_KEY})
        return psk

    def peerString(self, server: Server, psk: Path | None = None, identity: str = "enrp") -> str:
        port = self.routes.get((identity, server.number))
        if port is None:
            return super().peerString(server, psk, identity)
        if identity == "enrp-1":
            psk = Pool.serverPsk(self, self.servers[0])  # the right key
        return (
            f"tlspsk:host={LOOPBACK}:port={port}:identity={identity}"
            f":pskFile={psk or self.clientPsk}"
        )


async def _wait(pool: Pool, condition: Callable[[], bool], limit: float, what: str) -> None:
    """waitUntil, and on a timeout each server's peers and the tail of its log."""
    try:
        await waitUntil(condition, limit, what)
    except AssertionError as e:
        peers = []
        for server in pool.servers:
            try:
                peers.append(f"server {server.number} peers: {server.admin()['peers']}")
            except OSError as error:
                peers.append(f"server {server.number}: no admin answer ({error})")
        raise AssertionError("\n".join([str(e), *peers, pool.logs()])) from None


def _sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class PartitionTests(TestCase):
    timeout = 120

    async def test_a_blackholed_server_takes_over_nobody(self) -> None:
        """Server 1's ENRP links are blackholed while every server and PE runs, until
        server 1 has tried and abandoned the takeover of each other server twice and the
        others have taken it over.
        Server 1 finds both others dead but gets no majority: it completes no takeover,
        sends no H keep-alive, and the PEs of servers 2 and 3 stay homed there at every
        server; the majority (2 of 3) takes server 1 over. When the partition heals, the
        three agree again (the PE of server 1 stays with its new home)."""
        directory = Path(tempfile.mkdtemp(prefix="enrp-partition-"))
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        hole = Blackhole()
        self.addCleanup(hole.close)
        pool = ProxiedPool(directory, 3, hole)
        self.addCleanup(pool.stop)
        one, two, three = pool.servers
        pool.start(two)
        pool.start(three)
        await _wait(pool, lambda: len(two.admin()["peers"]) == 1, 10, "2 and 3 peering")
        pool.start(one)

        def joined() -> bool:
            return all(
                len(s.admin()["peers"]) == 2
                and all(p["connections"] == 2 for p in s.admin()["peers"])
                for s in pool.servers
            )

        await _wait(pool, joined, 15, "every server peering in both directions")
        elements = {s.number: pool.startElement(s, f"pe-at-{s.number}")[1] for s in pool.servers}
        await _wait(
            pool,
            lambda: all(set(s.elements()) == set(elements.values()) for s in pool.servers),
            10,
            "replication",
        )
        before = {s.number: s.elements() for s in pool.servers}
        assert before[1] == before[2] == before[3]
        # Every ENRP byte of server 1 goes through the forwarders (no direct link).
        for peer in one.admin()["peers"]:
            assert peer["connections"] == 2, one.admin()["peers"]
        hole.cut = True
        cut = time.monotonic()

        def log1() -> str:
            return readLog(one.process.log)

        def abandoned() -> bool:
            text = log1()
            return all(text.count(f"Takeover of 0x{n:08x} abandoned") >= ROUNDS for n in (2, 3))

        await _wait(pool, abandoned, LIMIT, f"server 1 abandoning {ROUNDS} takeovers of 2 and 3")

        def others() -> str:
            return readLog(two.process.log) + readLog(three.process.log)

        await _wait(
            pool, lambda: "Took over ENRP server 0x00000001" in others(), LIMIT, "takeover of 1"
        )

        def homes() -> set[int | None]:
            return {two.elements().get(elements[1]), three.elements().get(elements[1])}

        # The majority took server 1 over, and its PE went with it (2 and 3 agree where).
        await _wait(pool, lambda: len(h := homes()) == 1 and h <= {2, 3}, LIMIT, "PE of 1 moved")
        assert hole.dropped > 0
        log = log1()
        taken = [line for line in log.splitlines() if "Took over ENRP server" in line]
        assert taken == [], taken
        assert "asking 0 peers" in log  # it did find them dead
        assert "no majority" in log
        # Nothing pulled away from 2 and 3: their PEs are theirs at 2, at 3 and at 1.
        for server in pool.servers:
            view = server.elements()
            assert view[elements[2]] == 2, (server.number, view)
            assert view[elements[3]] == 3, (server.number, view)
        moved = homes().pop()
        assert moved is not None
        # The partition heals: the links reconnect and all three agree again.
        hole.cut = False
        healed = time.monotonic()

        def agreed() -> bool:
            views = [s.elements() for s in pool.servers]
            owners = [s.admin()["owners"] for s in pool.servers]
            return all(v == views[0] for v in views) and all(o == owners[0] for o in owners)

        await _wait(pool, agreed, 30, "agreement after the partition healed")
        assert one.elements() == {elements[1]: moved, elements[2]: 2, elements[3]: 3}
        print(
            f"blackhole of server 1 for {healed - cut:.1f} s: {hole.dropped} bytes dropped;"
            f" server 1 took over nobody; its PE moved to 0x{moved:08x}; all three agreed"
            f" {time.monotonic() - healed:.1f} s after the heal"
        )

    def tearDown(self) -> Any:
        return _sleep(0.1)
