"""The VPN half of the demo: IKEv2 gateways in an RSerPool pool, and a client that an
overloaded gateway redirects (RFC 5685) to the least loaded gateway of the pool.

It starts ``twistd -n enrp`` and three ``twistd -n vpngw`` on 127.0.0.2, .3 and .4 (one free
UDP port for all three, so no root is needed), each registered in pool ``vpngw`` with its
share of ``--max-sas`` as its Least Used load; gw1 also redirects new clients to the pool
(``--redirect-pool``) while it holds ``--redirect-max-sas`` IKE SAs. Earlier clients load
gw1 and gw2; then the client, this package's IKEv2 initiator, connects to gw1, is
redirected in IKE_SA_INIT to gw3 (the least loaded, as the ENRP server lists the pool) and
establishes its IKE SA there.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from twisted.web.client import Agent, readBody
from zope.interface import implementer

from twisted_rserpool._demo.support import Console, EnrpServer, Workspace, freePort, sleep
from twisted_rserpool.asap.errors import ResolutionFailed
from twisted_rserpool.asap.notifier import (
    FailoverEvent,
    GatewayFailoverEvent,
    IFailoverObserver,
)
from twisted_rserpool.asap.timers import AsapTimers
from twisted_rserpool.asap.user import PoolUser
from twisted_rserpool.ike.config import Identity, IkeConfig, PskTable
from twisted_rserpool.ike.endpoint import IkeEndpoint
from twisted_rserpool.ike.events import IkeEvent, IkeSaEstablished, IkeSaRedirected
from twisted_rserpool.ike.initiator import IkeInitiatorProtocol
from twisted_rserpool.ike.redirect_pool import FULL_LOAD, gatewayOf

__all__ = ["run"]

POOL = "vpngw"
GATEWAYS = {"gw1": "127.0.0.2", "gw2": "127.0.0.3", "gw3": "127.0.0.4"}
MAX_SAS = 10
"""Each gateway's --max-sas: its load is its IKE SAs divided by this."""
THRESHOLD = 3
"""gw1's --redirect-max-sas: it redirects new clients while it holds this many IKE SAs."""
EARLIER = {"gw1": 3, "gw2": 1}
"""IKE SAs the earlier clients hold before the client comes."""
PSK = "a pre-shared key for the demo only"
INTERVAL = "0.2"
"""--pool-interval: how often the gateways report their loads and gw1 resolves the pool."""


def _names() -> dict[str, str]:
    return {address: name for name, address in GATEWAYS.items()}


def _percent(load: int) -> str:
    return f"{100 * load / FULL_LOAD:.0f}%"


def _commonUdpPort() -> int:
    """A UDP port free on every gateway address (each gateway binds its own)."""
    for _ in range(50):
        port = freePort("127.0.0.2", socket.SOCK_DGRAM)
        try:
            for address in GATEWAYS.values():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no UDP port is free on 127.0.0.2 to 127.0.0.4")


class _Client(IkeInitiatorProtocol):
    """Our IKEv2 initiator, which says what happens to its IKE SAs."""

    def __init__(self, endpoint: IkeEndpoint, reactor: Any, console: Console | None) -> None:
        super().__init__(endpoint, reactor)
        self.console = console

    def ikeEventReceived(self, event: IkeEvent) -> None:
        if self.console is not None and isinstance(event, IkeSaRedirected):
            host = event.peer_address[0]
            target = str(event.new_gateway)
            self.console.say(
                f"   {_names().get(host, host)} answers IKE_SA_INIT with N(REDIRECT) to "
                f"{_names().get(target, target)} ({target}): the client follows it, with "
                f"N(REDIRECTED_FROM {host})"
            )
        super().ikeEventReceived(event)


@implementer(IFailoverObserver)
class _Observer:
    """The client's failover observer: hears of the completed redirect."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.events: list[FailoverEvent | GatewayFailoverEvent] = []

    def failoverOccurred(self, event: FailoverEvent | GatewayFailoverEvent) -> bool:
        self.events.append(event)
        self.console.say(f"   the client's failover observer hears: {event.describe()}")
        return True


async def _client(reactor: Any, name: str, port: int, console: Console | None) -> _Client:
    """An initiator on a UDP port of 127.0.0.1, redirected to gateways on ``port``."""
    config = IkeConfig(
        Identity.parse(f"{name}@demo"),
        PskTable(default=PSK.encode()),
        redirect_port=port,
        retransmit_timeout=0.5,
        initial_contact=False,  # the earlier clients share one identity
        childless="force" if console is None else "allow",
    )
    endpoint = IkeEndpoint(config, ("127.0.0.1", 0))
    protocol = _Client(endpoint, reactor, console)
    listening = reactor.listenUDP(0, protocol, interface="127.0.0.1")
    endpoint.local_address = ("127.0.0.1", listening.getHost().port)
    return protocol


async def _status(reactor: Any, adminPort: int) -> dict[str, Any]:
    """The admin interface's JSON status of a gateway."""
    agent = Agent(reactor)  # type: ignore[no-untyped-call]
    response = await agent.request(b"GET", f"http://127.0.0.1:{adminPort}/status".encode())
    document: dict[str, Any] = json.loads(await readBody(response))
    return document


async def _pool(user: PoolUser) -> dict[str, int]:
    """Gateway name to Least Used load, as the ENRP server lists pool ``vpngw`` now."""
    try:
        elements = await user.resolve(POOL.encode(), refresh=True)
    except ResolutionFailed:
        return {}
    listed = {}
    for element in elements:
        gateway = gatewayOf(element)
        if gateway is not None:
            listed[_names().get(str(gateway.address), str(gateway.address))] = gateway.load
    return listed


def _listing(loads: dict[str, int]) -> str:
    return ", ".join(f"{name} {_percent(loads[name])}" for name in sorted(loads))


async def run(reactor: Any, console: Console) -> bool:
    """Run this half on a running reactor; True when all went as shown."""
    workspace = Workspace("vpn-demo-")
    directory = workspace.directory
    user: PoolUser | None = None
    clients: list[Any] = []
    try:
        console.say(
            "VPN: IKEv2 gateways in an RSerPool pool, and a client redirected (RFC 5685) "
            "from an overloaded gateway to the least loaded one"
        )
        enrp = await EnrpServer.start(reactor, workspace)
        console.say(f"1. ENRP server: twistd -n enrp on 127.0.0.1:{enrp.port} (TLS)")
        secrets = directory / "vpngw.secrets"
        descriptor = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(f'* : "{PSK}"\n')
        port = _commonUdpPort()
        adminPort = freePort()
        console.say(
            f"2. three VPN gateways, IKEv2 on UDP port {port}, each registered in pool "
            f"'{POOL}' with its load (IKE SAs / --max-sas {MAX_SAS}):"
        )
        for name, address in GATEWAYS.items():
            options = [
                "vpngw",
                "--listen",
                address,
                "--port",
                str(port),
                "--nat-t-port",
                "0",
                "--identity",
                f"@{name}.demo",
                "--secrets",
                str(secrets),
                "--state-dir",
                str(directory / f"{name}-state"),
                "--max-sas",
                str(MAX_SAS),
                "--pool",
                POOL,
                # The ENRP server accepts only a registration from the address it names.
                "--pool-enrp",
                enrp.peClient(bindAddress=address),
                "--pool-interval",
                INTERVAL,
            ]
            shown = f"--listen {address} --pool {POOL}"
            if name == "gw1":
                options += [
                    "--redirect-max-sas",
                    str(THRESHOLD),
                    "--redirect-pool",
                    POOL,
                    "--redirect-pool-enrp",
                    enrp.puClient(),
                    "--admin",
                    f"tcp:{adminPort}",
                ]
                shown += f" --redirect-max-sas {THRESHOLD} --redirect-pool {POOL}"
            process = workspace.twistd(name, *options)
            console.say(f"   {name}: twistd -n vpngw {shown} ... (pid {process.pid})")

        user = PoolUser(
            [enrp.puClient()],
            reactor=reactor,
            timers=AsapTimers(t1_enrp_request=5.0, t5_server_hunt=1.0, stale_cache_value=0.0),
        )
        user.startService()
        loads: dict[str, int] = {}

        async def listed(condition: Any, what: str) -> None:
            """Resolve the pool into ``loads`` until ``condition(loads)`` holds."""
            for _ in range(150):
                loads.clear()
                loads.update(await _pool(user))
                if condition(loads):
                    return
                await sleep(reactor, 0.2)
            raise TimeoutError(f"timed out waiting for {what}: {_listing(loads)}")

        await listed(lambda found: set(found) == set(GATEWAYS), "three gateways in the pool")
        console.say(f"   the ENRP server lists pool '{POOL}': {_listing(loads)}")

        console.say(
            "3. earlier clients connect: "
            + ", ".join(f"{count} IKE SAs with {name}" for name, count in EARLIER.items())
        )
        earlier = await _client(reactor, "earlier", port, None)
        clients.append(earlier)
        for name, count in EARLIER.items():
            for _ in range(count):
                await earlier.initiate((GATEWAYS[name], port))

        def reported(found: dict[str, int]) -> bool:
            return all(
                found.get(name) == round(FULL_LOAD * EARLIER.get(name, 0) / MAX_SAS)
                for name in GATEWAYS
            )

        await listed(reported, "the gateways' load updates")
        console.say(f"   the gateways re-register with their loads: {_listing(loads)}")

        async def gw1Sees() -> dict[str, int]:
            pool = (await _status(reactor, adminPort))["pool"] or []
            return {_names().get(g["address"], g["address"]): g["load"] for g in pool}

        seen: dict[str, int] = {}
        for _ in range(150):
            seen = await gw1Sees()
            if all(seen.get(name) == loads[name] for name in loads):
                break
            await sleep(reactor, 0.1)
        else:
            raise TimeoutError(f"gw1 did not see the loads: {_listing(seen)}")
        console.say(
            f"   gw1 holds {EARLIER['gw1']} IKE SAs: at its threshold (--redirect-max-sas "
            f"{THRESHOLD}); its view of the pool (resolved every {INTERVAL} s): "
            + _listing({name: load for name, load in seen.items() if name != "gw1"})
        )

        console.say(f"4. the client (client@demo) connects to gw1 ({GATEWAYS['gw1']}:{port})")
        observer = _Observer(console)
        client = await _client(reactor, "client", port, console)
        client.failoverObservers.append(observer)
        clients.append(client)
        established: IkeSaEstablished = await client.initiate((GATEWAYS["gw1"], port))
        host = established.peer_address[0]
        served = _names().get(host, host)
        console.say(
            f"   IKE SA established with {served} ({host}:{established.peer_address[1]}), "
            f"identity {established.peer_id}, {established.suite}"
        )
        gw1 = await _status(reactor, adminPort)
        console.say(
            f"   gw1 still holds {gw1['ike_sas']} IKE SAs and counted its redirects by "
            f"reason: {gw1['redirects']}"
        )
        ok = served == "gw3" and len(observer.events) == 1 and gw1["ike_sas"] == EARLIER["gw1"]
        console.say(
            "VPN " + ("succeeded" if ok else "FAILED") + f": the client was redirected from "
            f"gw1 to {served}, the least loaded gateway of pool '{POOL}'"
        )
        return ok
    finally:
        for protocol in clients:
            if protocol.transport is not None:
                await protocol.transport.stopListening()
        if user is not None:
            await user.stopService()
        workspace.close()
