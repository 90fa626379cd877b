"""The ENRP server's settings as ``twistd enrp``'s options give them.

The authorization policy, the server identifier, the registrar's, the handlespace's and the
TCP mapping's settings, the peering core with the key it peers with, and the connection caps
that the file descriptor limit can hold. A problem is a ``UsageError`` naming the option,
or, for a descriptor limit too small to serve, ``SystemExit`` with one line.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from twisted.logger import Logger
from twisted.python import usage

from twisted_rserpool._tap.enrp_options import Options
from twisted_rserpool._tap.enrp_state import (
    checkFile,
    persistentServerIdentifier,
    prepareStateDirectory,
    serverIdentifierBindings,
)
from twisted_rserpool.enrp.peers import PeerConfig, PeerCore
from twisted_rserpool.enrp.registrar import RegistrarConfig
from twisted_rserpool.handlespace import Handlespace, HandlespaceLimits
from twisted_rserpool.security.authorization import AuthorizationPolicy, PolicyError
from twisted_rserpool.transport.connection import MappingConfig

__all__ = [
    "chooseServerIdentifier",
    "connectionCaps",
    "loadPolicy",
    "makeHandlespace",
    "mappingConfig",
    "peerCore",
    "peerPskFile",
    "registrarConfig",
]

log = Logger(namespace="twisted_rserpool._tap.enrp")  # the command's namespace


def loadPolicy(options: Options) -> AuthorizationPolicy:
    """The ``--policy`` file's authorization policy, or one that lets every identity in."""
    try:
        return (
            AuthorizationPolicy.from_file(options["policy"])
            if options["policy"] is not None
            else AuthorizationPolicy()
        )
    except PolicyError as e:
        raise usage.UsageError(f"--policy: {e}") from None


def chooseServerIdentifier(options: Options) -> None:
    """Set an unset ``--server-id``: the state directory's when peering, else a random one."""
    if options["server-id"] is None:
        options["server-id"] = (
            persistentServerIdentifier(Path(options["state-dir"]))
            if options.peering
            else secrets.randbelow(0xFFFFFFFF) + 1
        )


def registrarConfig(options: Options) -> RegistrarConfig:
    """The registrar's settings."""
    return RegistrarConfig(
        server_identifier=options["server-id"],
        secure=not options["insecure"],
        anonymous_pool_users=not options["no-anonymous-pool-users"],
        keep_alive_interval=options["keep-alive-interval"],
        keep_alive_timeout=options["keep-alive-timeout"],
        max_bad_pe_report=options["max-bad-pe-report"],
        unreachable_report_window=options["unreachable-report-window"],
        handle_resolution_items=min(options["handle-resolution-items"], 128),
        max_registration_life=options["max-registration-life"],
        request_rate=options["request-rate"],
        identity_rate=options["identity-rate"],
        anonymous_rate=options["anonymous-rate"],
        unreachable_rate=options["unreachable-rate"],
        keep_alive_rate=options["keep-alive-rate"],
    )


def makeHandlespace(options: Options) -> Handlespace:
    """An empty handlespace with the ``--max-pool*`` limits."""
    return Handlespace(
        HandlespaceLimits(
            max_pools=options["max-pools"],
            max_elements_per_pool=options["max-pool-elements-per-pool"],
            max_elements_per_identity=options["max-pool-elements-per-identity"],
        )
    )


def mappingConfig(options: Options) -> MappingConfig:
    """The TCP mapping's heartbeat settings."""
    return MappingConfig(
        heartbeat_interval=options["heartbeat-interval"],
        heartbeat_timeout=options["heartbeat-timeout"],
    )


def peerPskFile(options: Options) -> str:
    """The PSK file with ``--enrp-identity``'s key: ``--enrp-psk-file``, ``--psk-file``, or
    the state directory's (made if missing)."""
    pskFile: str | None = options["enrp-psk-file"] or options["psk-file"]
    if options["enrp-psk-file"] is not None:
        checkFile("--enrp-psk-file", options["enrp-psk-file"], psk=True)
    if pskFile is None:
        pskFile, _, _ = prepareStateDirectory(options)
    return pskFile


def peerCore(options: Options, handlespace: Handlespace, policy: AuthorizationPolicy) -> PeerCore:
    """The core of this server's side of the ENRP server pool."""
    return PeerCore(
        PeerConfig(
            server_identifier=options["server-id"],
            secure=not options["insecure"],
            peer_heartbeat_cycle=options["peer-heartbeat-cycle"],
            max_time_last_heard=options["max-time-last-heard"],
            max_time_no_response=options["max-time-no-response"],
            takeover_expiry=options["takeover-expiry"],
            mentor_discovery=options["mentor-discovery"],
            home_keep_alive_rate=options["home-keep-alive-rate"],
            keep_alive_timeout=options["keep-alive-timeout"],
        ),
        handlespace,
        policy,
        expect_mentor=bool(options["peer"]),
        bindings=serverIdentifierBindings(options, policy),
    )


def connectionCaps(options: Options, peering: bool) -> tuple[int, int]:
    """The ASAP and ENRP connection caps this process's RLIMIT_NOFILE can hold.

    The soft limit is raised (up to the hard one) when the caps need it; if even the hard
    limit is too small the caps are lowered with a warning, and if it cannot hold
    MINIMUM_CONNECTIONS the server does not start (one line on stderr, no traceback).
    The reserve covers the server's other descriptors: files, listeners, the admin
    interface, the outgoing peer connections and a burst of H keep-alive connections.
    """
    from twisted_rserpool.transport.admission import (  # noqa: PLC0415
        DESCRIPTOR_RESERVE,
        DescriptorLimitError,
        applyDescriptorLimit,
    )

    wantedPeers = options["max-peer-connections"] if peering else 0
    reserve = DESCRIPTOR_RESERVE + len(options["asap"]) + len(options["enrp"])
    if peering:
        reserve += len(options["peer"]) + int(options["home-keep-alive-rate"].burst)
    try:
        budget, soft = applyDescriptorLimit(
            options["max-connections"], wantedPeers, reserve=reserve
        )
    except DescriptorLimitError as e:
        raise SystemExit(f"twistd enrp: cannot start: {e}") from None
    if budget.softLimit > soft:
        log.info(
            "Raised the file descriptor limit (RLIMIT_NOFILE) from {old} to {new} for "
            "the connection caps",
            old=soft,
            new=budget.softLimit,
        )
    if budget.lowered:
        log.warn(
            "The file descriptor limit (RLIMIT_NOFILE {limit}) cannot hold the connection "
            "caps: --max-connections lowered from {asked} to {connections}"
            + (", --max-peer-connections from {askedPeers} to {peers}" if peering else "")
            + " ({reserve} descriptors kept in reserve); raise the limit (ulimit -n) to "
            "serve more",
            limit=budget.softLimit,
            asked=options["max-connections"],
            connections=budget.maxConnections,
            askedPeers=wantedPeers,
            peers=budget.maxPeerConnections,
            reserve=reserve,
        )
    return budget.maxConnections, budget.maxPeerConnections or options["max-peer-connections"]
