"""The ``rserpool`` command: its options and what each subcommand does.

Exit status: 0 when the command did what it was asked, 1 when the admin interface could not
be reached or refused the request, 2 for a command line it does not understand.
"""

from __future__ import annotations

import getopt
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, TextIO

from twisted.python import usage

from twisted_rserpool._tap import _NamedCoerceParameter, _version
from twisted_rserpool._tap.coerce import positiveFloat
from twisted_rserpool.cli import enrp, vpngw
from twisted_rserpool.cli.adminclient import (
    ENRP,
    TOKEN_VARIABLE,
    VPNGW,
    AdminClient,
    AdminError,
    Server,
    findToken,
    parseAdminAddress,
)
from twisted_rserpool.cli.table import oneLine, printable

#: Exit status for a request that failed, and for a command line that is wrong.
FAILED, USAGE = 1, 2
#: What rendering a document of an unexpected shape raises (a missing key, a list where a
#: mapping belongs, a number too large for a float...).
MALFORMED = (LookupError, TypeError, ValueError, AttributeError, ArithmeticError)


class _ConnectionOptions(usage.Options):
    """Where the admin interface is and how to authenticate; each subcommand takes them,
    and so does ``rserpool`` before the subcommand."""

    optFlags: ClassVar[list[list[str | None]]] = [
        ["json", None, "Print the server's JSON document instead of a table."],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        [
            "admin",
            None,
            None,
            "The admin interface: a URL, HOST:PORT, a port, or the server's --admin "
            "endpoint string (tcp:8864, unix:/run/enrp-admin.sock). Default: "
            f"{ENRP.defaultAddress} for pools, pe and peers, {VPNGW.defaultAddress} for "
            "sas, drain and redirect.",
        ],
        [
            "token-file",
            None,
            None,
            "File holding the admin bearer token (the server's <state-dir>/admin.token). "
            f"Default: ${TOKEN_VARIABLE}, else ./enrp-state/admin.token or "
            "./vpngw-state/admin.token if readable.",
        ],
        ["timeout", None, None, "Seconds to wait for the answer (default 10).", positiveFloat],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.longdesc = inspect.cleandoc(type(self).__doc__ or "")
        dispatch: dict[str, Any] = self._dispatch
        for name, handler in list(dispatch.items()):
            if type(handler) is usage.CoerceParameter:  # say which option is wrong
                dispatch[name] = _NamedCoerceParameter(handler.options, handler.coerce)  # type: ignore[no-untyped-call]

    def opt_version(self) -> None:
        """Print the version of twisted-rserpool and exit."""
        sys.stdout.write(_version() + "\n")  # the program's own output
        sys.exit(0)


class _Command(_ConnectionOptions):
    """A subcommand: which server it talks to, and what it does with the client."""

    #: The server kind whose admin interface the command uses.
    server: ClassVar[Server]
    #: What follows ``rserpool COMMAND`` in the usage line.
    synopsis = "[options]"

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Options may follow the arguments too (``rserpool pe echo --json``)."""
        try:
            given, arguments = getopt.gnu_getopt(list(options or ()), self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        ordered = [
            f"{name}={value}" if name.startswith("--") and name[2:] + "=" in self.longOpt else name
            for name, value in given
        ]
        super().parseOptions([*ordered, "--", *arguments])  # type: ignore[no-untyped-call]

    def getSynopsis(self) -> str:
        """``Usage: rserpool COMMAND ...`` (Twisted would repeat the parent's whole line)."""
        command = self.parent.subCommand if self.parent is not None else "COMMAND"
        return f"Usage: rserpool {command} {self.synopsis}"

    def request(self, client: AdminClient) -> dict[str, Any]:
        """The command's request: the server's status document, unless it says otherwise."""
        return client.get("/status")

    def render(self, document: dict[str, Any]) -> str:
        """What the server answered, as text for the operator."""
        raise NotImplementedError

    def text(self, document: dict[str, Any]) -> str:
        """:meth:`render` without control characters (a server's strings may hold any)."""
        return printable(self.render(document))

    def run(self, client: AdminClient, asJson: bool, out: TextIO) -> None:
        """Make the request and write the answer: the table, or the JSON with ``asJson``."""
        document = self.request(client)
        out.write(json.dumps(document, indent=2) + "\n" if asJson else self.text(document))


class PoolsOptions(_Command):
    """List the pools of an ENRP server's handlespace: handle, policy, PE count, homes."""

    server = ENRP

    def render(self, document: dict[str, Any]) -> str:
        return enrp.serverLine(document) + "\n" + enrp.poolsTable(document)


class ElementOptions(_Command):
    """List the pool elements (all, or of POOL): identifier, transport, policy and load,
    home ENRP server, the identity that registered it, owner identity, registration life.
    With --json the document's pools are only POOL."""

    server = ENRP
    synopsis = "[options] [POOL]"
    pool: str | None = None

    def parseArgs(self, pool: str | None = None) -> None:
        self.pool = pool

    def request(self, client: AdminClient) -> dict[str, Any]:
        document = client.get("/status")
        try:
            return {**document, "pools": enrp.selectPool(document, self.pool)}
        except LookupError:
            known = ", ".join(p["pool_handle"] for p in document["pools"]) or "none"
            raise AdminError(
                f"{client.address.url('/status')}: no pool {self.pool!r} (pools: {known})"
            ) from None

    def render(self, document: dict[str, Any]) -> str:
        return enrp.serverLine(document) + "\n" + enrp.elementsTable(document)


class PeersOptions(_Command):
    """List an ENRP server's peers: identifier, identity, state, last heard, checksums."""

    server = ENRP

    def render(self, document: dict[str, Any]) -> str:
        return enrp.serverLine(document) + "\n" + enrp.peersTable(document)


class SasOptions(_Command):
    """List a VPN gateway's IKE SAs with their CHILD_SAs, its load and redirect targets."""

    server = VPNGW

    def render(self, document: dict[str, Any]) -> str:
        return vpngw.sasTables(document)


class DrainOptions(_Command):
    """Drain a VPN gateway: redirect new clients elsewhere (--move: established ones
    too, at once), or stop draining (--stop)."""

    server = VPNGW
    synopsis = "[--stop | --move] [options]"
    optFlags: ClassVar[list[list[str | None]]] = [
        ["stop", None, "Stop draining: accept new clients again."],
        ["move", None, "Also move every established client now (gateway-initiated redirect)."],
    ]

    def postOptions(self) -> None:
        if self["stop"] and self["move"]:
            raise usage.UsageError("--stop and --move exclude each other")

    def request(self, client: AdminClient) -> dict[str, Any]:
        return client.post("/drain", vpngw.drainBody(bool(self["stop"]), bool(self["move"])))

    def render(self, document: dict[str, Any]) -> str:
        return vpngw.drainText(document)


class RedirectOptions(_Command):
    """Move clients to another gateway with a gateway-initiated redirect (RFC 5685): one
    named by --peer or --spi (then --target is needed), or --all (each to --target, or to
    the redirect policy's choice)."""

    server = VPNGW
    synopsis = "(--peer ADDRESS | --spi HEX | --all) [--target GATEWAY] [options]"
    optFlags: ClassVar[list[list[str | None]]] = [
        ["all", None, "Move every client."],
    ]
    optParameters: ClassVar[list[list[Any]]] = [
        ["peer", None, None, "The client's address (ADDRESS or ADDRESS:PORT)."],
        ["spi", None, None, "The client's IKE SA, by its initiator or responder SPI (hex)."],
        ["target", None, None, "The gateway to move to (an address or a host name)."],
    ]

    def postOptions(self) -> None:
        chosen = [name for name in ("peer", "spi", "all") if self[name]]
        if len(chosen) != 1:
            raise usage.UsageError("name the clients with exactly one of --peer, --spi, --all")
        spi = self["spi"]
        if spi is not None:
            try:
                bytes.fromhex(spi.lower().removeprefix("0x"))
            except ValueError:
                raise usage.UsageError(f"--spi: {spi!r} is not hexadecimal") from None

    def request(self, client: AdminClient) -> dict[str, Any]:
        body = vpngw.redirectBody(self["peer"], self["spi"], bool(self["all"]), self["target"])
        return client.post("/redirect", body)

    def render(self, document: dict[str, Any]) -> str:
        return vpngw.redirectText(document)


class Options(_ConnectionOptions):
    """Show and steer twisted-rserpool servers through their admin interfaces:
    ENRP servers (twistd enrp --admin) and VPN gateways (twistd vpngw --admin)."""

    synopsis = "Usage: rserpool [options] COMMAND [command options]"
    subCommands: ClassVar[list[list[Any]]] = [
        ["pools", None, PoolsOptions, "ENRP: the pools, their policies and PE counts"],
        ["pe", None, ElementOptions, "ENRP: the pool elements (of one pool)"],
        ["peers", None, PeersOptions, "ENRP: the peer ENRP servers and their state"],
        ["sas", None, SasOptions, "vpngw: the IKE SAs and CHILD_SAs"],
        ["drain", None, DrainOptions, "vpngw: start or stop draining"],
        ["redirect", None, RedirectOptions, "vpngw: move clients to another gateway"],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError(
                "a command is needed: " + ", ".join(c[0] for c in self.subCommands)
            )


def _setting(options: Options, command: _Command, name: str) -> Any:
    """An option given after the command, else before it."""
    value = command[name]
    return value if value not in (None, 0) else options[name]


def execute(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run ``rserpool`` with ``argv`` (without the program name); returns the exit status."""
    options = Options()
    try:
        options.parseOptions(list(argv))  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        err.write(f"rserpool: {e} (rserpool --help lists the commands)\n")
        return USAGE
    command: _Command = options.subOptions
    try:
        address = parseAdminAddress(
            _setting(options, command, "admin") or command.server.defaultAddress
        )
    except ValueError as e:
        err.write(f"rserpool: --admin: {e}\n")
        return USAGE
    try:
        client = AdminClient(
            address,
            command.server,
            findToken(_setting(options, command, "token-file"), command.server),
            _setting(options, command, "timeout") or 10.0,
        )
        command.run(client, bool(_setting(options, command, "json")), out)
    except AdminError as e:
        err.write(f"rserpool: {oneLine(str(e))}\n")
        return FAILED
    except MALFORMED as e:
        err.write(
            f"rserpool: {address.url('')}: the answer is not what twistd"
            f" {command.server.command}'s admin interface sends"
            f" ({type(e).__name__}: {oneLine(str(e))[:200]})\n"
        )
        return FAILED
    return 0


def run() -> None:
    """The console script ``rserpool``."""
    try:
        status = execute(sys.argv[1:], sys.stdout, sys.stderr)
        sys.stdout.flush()
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:  # rserpool pe | head: the reader has all it wanted
        # Python flushes stdout again at exit; point it at /dev/null so that says nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 0
    sys.exit(status)


__all__ = [
    "MALFORMED",
    "DrainOptions",
    "ElementOptions",
    "Options",
    "PeersOptions",
    "PoolsOptions",
    "RedirectOptions",
    "SasOptions",
    "execute",
    "run",
]
