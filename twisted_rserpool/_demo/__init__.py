"""The README's main job: the system working, with readable output (no public API).

``./scripts/demo`` runs ``python -m twisted_rserpool._demo``, both halves on loopback with
real processes and no root:

- ``rserpool`` (:mod:`.rserpool`): a ``twistd enrp``, a pool of pool elements, a pool user
  whose session survives a pool element killed with SIGKILL, and the failover notification
  with both TLS security contexts;
- ``vpn`` (:mod:`.vpn`): ``twistd vpngw`` gateways in an RSerPool pool, and this package's
  IKEv2 initiator redirected from an overloaded gateway to the least loaded one.

``wire`` (:mod:`.wire`) shows the wire format instead, dissected by tshark from a checkout.
:mod:`.pe` is the pool element process the demo, the benchmarks and the process tests run.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TextIO

from twisted.internet.defer import Deferred
from twisted.python import usage
from twisted.python.failure import Failure

from twisted_rserpool._demo.support import Console, ProgramOptions

__all__ = ["Options", "main", "runHalves"]


def _atLeastTwo(text: str) -> int:
    value = int(text)
    if value < 2:
        raise ValueError("the demo needs at least two pool elements")
    return value


class _RSerPoolOptions(usage.Options):
    """The RSerPool failover alone."""

    optParameters: ClassVar[list[list[Any]]] = [
        ["pool-elements", None, 3, "How many pool elements (at least 2).", _atLeastTwo],
    ]


class _VpnOptions(usage.Options):
    """The VPN redirect alone."""


class _WireOptions(usage.Options):
    """The wire format: a registration, a handle resolution and its answer, encoded, decoded
    back, and dissected by Wireshark's tshark from the same bytes."""

    optFlags: ClassVar[list[list[str | None]]] = [["no-tshark", None, "Do not run tshark."]]


class Options(ProgramOptions):
    """Show twisted-rserpool working: the RSerPool failover, then the VPN redirect."""

    synopsis = "python -m twisted_rserpool._demo [rserpool | vpn | wire]"
    subCommands: ClassVar[list[list[Any]]] = [
        ["rserpool", None, _RSerPoolOptions, _RSerPoolOptions.__doc__],
        ["vpn", None, _VpnOptions, _VpnOptions.__doc__],
        ["wire", None, _WireOptions, "The wire format, dissected by tshark."],
    ]


async def runHalves(reactor: Any, out: TextIO, halves: Sequence[str], poolElements: int = 3) -> int:
    """Run the named halves (``"rserpool"``, ``"vpn"``) in turn; the exit status."""
    from twisted_rserpool._demo import rserpool, vpn  # noqa: PLC0415 (the reactor first)

    console = Console(out)
    console.say("twisted-rserpool demo: everything on loopback, real processes, no root")
    steps: dict[str, Callable[[], Awaitable[bool]]] = {
        "rserpool": lambda: rserpool.run(reactor, console, poolElements=poolElements),
        "vpn": lambda: vpn.run(reactor, console),
    }
    results = []
    for half in halves:
        console.say()
        results.append(await steps[half]())
    console.say()
    ok = all(results)
    console.say("demo " + ("succeeded" if ok else "FAILED") + f": {' and '.join(halves)}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo with the global reactor; returns the exit status."""
    options = Options()
    if not options.parseCommandLine(argv):
        return 2
    if options.subCommand == "wire":
        from twisted_rserpool._demo import wire  # noqa: PLC0415

        return wire.show(out, tshark=not options.subOptions["no-tshark"])
    halves = [options.subCommand] if options.subCommand else ["rserpool", "vpn"]
    poolElements = options.subOptions["pool-elements"] if options.subCommand == "rserpool" else 3

    from twisted.internet import reactor  # noqa: PLC0415

    status: list[int] = []

    def start() -> None:
        done = Deferred.fromCoroutine(runHalves(reactor, out, halves, poolElements))

        def finish(result: object) -> None:
            if isinstance(result, Failure):
                out.write(f"demo failed: {result.getErrorMessage()}\n")
                status.append(1)
            else:
                status.append(int(result))  # type: ignore[call-overload]
            reactor.stop()

        done.addBoth(finish)

    reactor.callWhenRunning(start)
    reactor.run()
    return status[0] if status else 1
