"""``twistd poolmember``: register a server this process does not run (in any language, on
UDP, TCP or SCTP) as a pool element, with the load it reports.

    twistd -n poolmember --pool vpngw --transport udp:192.0.2.5:500 \\
        --enrp tlspsk:host=192.0.2.1:port=3864:identity=gw5:pskFile=gw5.psk:bindAddress=192.0.2.5 \\
        --load-vici /var/run/charon.vici --load-capacity 1000

The load is read every ``--load-interval`` seconds from one of ``--load-command``,
``--load-file``, ``--load-url`` or ``--load-vici``, divided by ``--load-capacity`` and
registered (re-registered only when it moved by ``--load-threshold``). Failed readings
keep the last load; ``--max-load-failures`` of them in a row deregister the member until
its load can be read again. SIGHUP reads the PSK files of the ``--enrp`` strings again
and the load at once (docs/poolmember.md).
"""

from __future__ import annotations

import shlex
import shutil
from typing import Any, ClassVar

from twisted.application.service import IService, MultiService
from twisted.python import usage

from twisted_rserpool._tap.coerce import (
    endpointFromString,
    nonNegativeFloat,
    nonNegativeInt,
    positiveFloat,
    share,
)
from twisted_rserpool.poolmember.description import (
    POLICY_NAMES,
    carriesLoad,
    parsePolicy,
    parseTransport,
    transportText,
)
from twisted_rserpool.poolmember.sources import (
    CallableLoad,
    CommandLoad,
    FileLoad,
    ILoadSource,
    UrlLoad,
)
from twisted_rserpool.poolmember.tracker import LoadTracker
from twisted_rserpool.poolmember.viciload import COUNTS

__all__ = ["Options", "makeService"]

#: The load sources, at most one of which is given.
SOURCES = ("load-command", "load-file", "load-url", "load-vici")


def _identifier(value: str) -> int:
    number = int(value, 0)
    if not 0 < number <= 0xFFFFFFFF:
        raise ValueError("must be a non-zero 32-bit number such as 0x1234")
    return number


class Options(usage.Options):
    """Command line of ``twistd poolmember``."""

    synopsis = "--pool HANDLE --transport udp|tcp|sctp:ADDRESS:PORT --enrp ENDPOINT [options]"
    longdesc = (
        "Registers a server that this process does not run (written in any language, such "
        "as a strongSwan gateway) as a pool element of an RSerPool pool at ENRP servers "
        "(TLS-PSK), with its user transport (RFC 5354: UDP, TCP or SCTP) and its selection "
        "policy (RFC 5356). Its load is read periodically from a command, a file, an HTTP "
        "URL or strongSwan's vici socket (the IKE SAs) and kept current at the ENRP server."
    )

    optParameters: ClassVar[list[list[Any]]] = [
        ["pool", None, None, "The pool handle to register in (required)."],
        [
            "transport",
            None,
            None,
            "The member's user transport, data only (required): udp:ADDRESS:PORT, "
            "tcp:ADDRESS:PORT, udplite:ADDRESS:PORT or sctp:ADDRESS[,ADDRESS...]:PORT, "
            "[IPV6] in brackets. The ENRP server accepts only the registration connection's "
            "own address (bindAddress= in --enrp), or 0.0.0.0, which it replaces by it.",
        ],
        [
            "policy",
            None,
            "least-used",
            "The selection policy: " + ", ".join(POLICY_NAMES) + ". The load policies carry "
            "the load read; the others use the readings only as a health check.",
        ],
        [
            "load-command",
            None,
            None,
            "A command that prints the load (its first word, a number); run without a "
            "shell (sh -c '...' for one), it must exit with status 0.",
        ],
        ["load-file", None, None, "A file that holds the load (its first word, a number)."],
        [
            "load-url",
            None,
            None,
            "An http:// or https:// URL whose body holds the load (its first word); it "
            "must answer 200.",
        ],
        [
            "load-vici",
            None,
            None,
            "strongSwan charon's vici socket, such as /var/run/charon.vici: the load is its "
            "number of IKE SAs (see --vici-count); needs --load-capacity.",
        ],
        [
            "vici-count",
            None,
            "stats",
            "What --load-vici counts: 'stats' (charon's IKE SA total, half-open included; "
            "one cheap request) or 'established' (list-sas, the IKE SAs in state "
            "ESTABLISHED; one event per SA).",
        ],
        [
            "load-capacity",
            None,
            1.0,
            "What the load counts when the member is full: the reading divided by this is "
            "the member's share of full load, scaled to RFC 5356's 0..0xFFFFFFFF (clamped). "
            "Default 1: the reading is the share itself.",
            positiveFloat,
        ],
        [
            "load-interval",
            None,
            5.0,
            "Seconds between load readings.",
            positiveFloat,
        ],
        [
            "load-timeout",
            None,
            None,
            "Seconds a reading may take before it counts as failed (the command is killed). "
            "Default: --load-interval.",
            positiveFloat,
        ],
        [
            "load-threshold",
            None,
            0.01,
            "Re-register only when the load moved by at least this share of full load "
            "(0: on any change).",
            share,
        ],
        [
            "max-load-failures",
            None,
            3,
            "Deregister the member after this many failed load readings in a row (the last "
            "load is kept until then); it registers again with the next good reading. "
            "0: never deregister.",
            nonNegativeInt,
        ],
        [
            "load",
            None,
            0.0,
            "A fixed load when no load source is given (divided by --load-capacity).",
            nonNegativeFloat,
        ],
        [
            "registration-life",
            None,
            60,
            "Seconds the ENRP server keeps the registration between re-registrations.",
            int,
        ],
        [
            "pe-identifier",
            None,
            None,
            "The PE identifier (such as 0x1234), to keep one across restarts. Default: random.",
            _identifier,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["enrp"] = []

    def opt_enrp(self, description: str) -> None:
        self["enrp"].append(description)

    opt_enrp.__doc__ = (
        "An ENRP server as a client endpoint string (repeatable, hunted in order), such as "
        "tlspsk:host=127.0.0.1:port=3864:identity=pe:pskFile=pe.psk:bindAddress=127.0.0.5"
    )

    def postOptions(self) -> None:
        """Check and convert the options."""
        if not self["pool"]:
            raise usage.UsageError("--pool is required")
        if self["transport"] is None:
            raise usage.UsageError("--transport is required")
        if not self["enrp"]:
            raise usage.UsageError("--enrp is required (an ENRP server's client endpoint)")
        try:
            self["user_transport"] = parseTransport(self["transport"])
        except ValueError as e:
            raise usage.UsageError(f"--transport: {e}") from None
        try:
            self["selection_policy"] = parsePolicy(self["policy"])
        except ValueError as e:
            raise usage.UsageError(f"--policy: {e}") from None
        given = [name for name in SOURCES if self[name] is not None]
        if len(given) > 1:
            raise usage.UsageError(f"give one load source, not --{' and --'.join(given)}")
        self["source"] = given[0] if given else None
        if self["load-command"] is not None:
            argv = shlex.split(self["load-command"])
            if not argv or shutil.which(argv[0]) is None:
                raise usage.UsageError(
                    f"--load-command: {argv[0] if argv else '(empty)'!r} is not a command "
                    "found on PATH"
                )
            self["argv"] = [shutil.which(argv[0]), *argv[1:]]
        if self["load-url"] is not None and not self["load-url"].lower().startswith(
            ("http://", "https://")
        ):
            raise usage.UsageError("--load-url: give an http:// or https:// URL")
        if self["vici-count"] not in COUNTS:
            raise usage.UsageError(f"--vici-count: one of {', '.join(COUNTS)}")
        if self["load-vici"] is not None and self["load-capacity"] == 1.0:
            raise usage.UsageError(
                "--load-vici needs --load-capacity: the number of IKE SAs at full load"
            )
        if self["registration-life"] <= 0:
            raise usage.UsageError("--registration-life: must be positive")


def loadSource(options: Options, reactor: Any) -> ILoadSource:
    """The load source the options name (a fixed load without one)."""
    source = options["source"]
    if source == "load-command":
        return CommandLoad(options["argv"], reactor)
    if source == "load-file":
        return FileLoad(options["load-file"])
    if source == "load-url":
        return UrlLoad(options["load-url"], reactor)
    if source == "load-vici":
        from twisted_rserpool.poolmember.viciload import ViciLoad  # noqa: PLC0415

        return ViciLoad(options["load-vici"], reactor, options["vici-count"])
    fixed: float = options["load"]
    return CallableLoad(lambda: fixed)


def makeService(options: Options, reactor: Any = None) -> IService:
    """The member's registration (a pool element without a listener, kept current) and
    its SIGHUP reload (the PSK files of the --enrp endpoints, and the load at once)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor  # noqa: PLC0415 (lazy)

        reactor = default_reactor
    from twisted.internet.endpoints import clientFromString  # noqa: PLC0415 (lazy)

    from twisted_rserpool._reload import ReloadOnSignal  # noqa: PLC0415
    from twisted_rserpool.asap.element import PoolElement  # noqa: PLC0415 (lazy)
    from twisted_rserpool.poolmember.registration import MemberRegistration  # noqa: PLC0415
    from twisted_rserpool.poolmember.reload import MemberReloader, pskCreators  # noqa: PLC0415

    servers = [
        endpointFromString(clientFromString, reactor, description, "--enrp")
        for description in options["enrp"]
    ]
    policy = options["selection_policy"]
    element = PoolElement(
        options["pool"].encode("utf-8"),
        None,
        servers,
        None,
        userTransport=options["user_transport"],
        policy=policy,
        registrationLife=options["registration-life"],
        peIdentifier=options["pe-identifier"],
        reactor=reactor,
    )
    tracker = LoadTracker(
        capacity=options["load-capacity"],
        threshold=options["load-threshold"],
        maxFailures=options["max-load-failures"],
        carriesLoad=carriesLoad(policy),
    )
    registration = MemberRegistration(
        element,
        loadSource(options, reactor),
        reactor,
        options["load-interval"],
        tracker=tracker,
        timeout=options["load-timeout"],
    )
    registration.log.info(
        "poolmember: {transport} joins pool {pool} with policy {policy}, load from {source}",
        transport=transportText(options["user_transport"]),
        pool=options["pool"],
        policy=options["policy"],
        source=repr(registration.source),
    )
    top = MultiService()  # type: ignore[no-untyped-call]
    registration.setServiceParent(top)  # type: ignore[no-untyped-call]
    reloader = MemberReloader(registration, pskCreators(servers))
    hangUp = ReloadOnSignal(reloader, reactor, "the pre-shared keys and the load")
    hangUp.setServiceParent(top)  # type: ignore[no-untyped-call]
    return top
