"""ASAP_ENDPOINT_UNREACHABLE reports (RFC 5352 3.5, RFC 5355 2.13). Sans-IO.

:class:`UnreachableReports` counts what pool users report, at most once per reporter and
PE within a window and within each reporter's rate, and has the PE probed with a
keep-alive: a report alone never removes a PE.
"""

from __future__ import annotations

from typing import TypeAlias

from twisted.logger import Logger

from twisted_rserpool.describe import handleText
from twisted_rserpool.enrp.keepalive import KeepAlives
from twisted_rserpool.enrp.registrarstate import (
    ConnectionState,
    PoolElementKey,
    RegistrarHooks,
    RegistrarState,
)
from twisted_rserpool.security.ratelimit import RateLimiter
from twisted_rserpool.wire import asap
from twisted_rserpool.wire.errors import CauseCode

log = Logger()

#: Who reported a PE unreachable: ("identity", name), or ("address", peer address) for
#: an unauthenticated pool user (its connections count as one).
Reporter: TypeAlias = tuple[str, str]


class UnreachableReports:
    """What pool users report about PEs, counted and checked with a probe."""

    def __init__(
        self, state: RegistrarState, hooks: RegistrarHooks, keep_alives: KeepAlives
    ) -> None:
        self._state = state
        self._hooks = hooks
        self._keep_alives = keep_alives
        self._limiter: RateLimiter[Reporter] = RateLimiter(state.config.unreachable_rate)

    def received(
        self, connection: ConnectionState, message: asap.EndpointUnreachable, now: float
    ) -> None:
        """RFC 5352 3.5 and RFC 5355 2.13: count the report, probe the PE, never trust it.

        Only a peer that may resolve the pool may report. Each reporter counts once per PE
        within ``unreachable_report_window``; a sign of life from the PE clears the count.
        A counted report about a PE registered here sends it a point-to-point keep-alive
        (within its keep-alive rate); at MAX-BAD-PE-REPORT the probe is sent as soon as that
        rate allows. The PE goes only when a keep-alive stays unanswered: a report alone
        never removes it. Reports about PEs homed elsewhere are counted, and their home
        decides. RFC 5352 defines no answer to this message, so refusals are logged and
        counted, and nothing is sent back.
        """
        state = self._state
        counters = state.counters
        config = state.config
        key = (message.pool_handle, message.pe_identifier)
        if not self._hooks.allowResolution(connection, message.pool_handle):
            self._refuse(connection, key, "the reporter may not resolve this pool")
            return
        reporter = _reporter(connection)
        if not self._limiter.allow(reporter, now):
            counters["unreachable_reports_rate_limited"] += 1
            return
        counters["unreachable_reports"] += 1
        result = state.handlespace.count_unreachable(
            *key,
            reporter,
            now=now,
            window=config.unreachable_report_window,
            max_reporters=max(16, config.max_bad_pe_report),
        )
        if result is None:
            counters["unreachable_reports_unknown_pe"] += 1
            return
        if not result.counted:
            counters["unreachable_reports_repeated"] += 1
            return
        if key not in state.registered:
            counters["unreachable_reports_not_home"] += 1
            return
        reached = result.count >= config.max_bad_pe_report
        if reached:
            counters["unreachable_threshold_reached"] += 1
            log.info(
                "PE 0x{pe:08x} of pool {pool}: {count} unreachable reports (MAX-BAD-PE-REPORT"
                " {limit}), probing it; it stays if it answers",
                pe=key[1],
                pool=handleText(key[0]),
                count=result.count,
                limit=config.max_bad_pe_report,
            )
        self._keep_alives.probe(key, now, urgent=reached)

    def _refuse(self, connection: ConnectionState, key: PoolElementKey, reason: str) -> None:
        self._state.counters["unreachable_reports_refused"] += 1
        connection.unreachable_refused += 1
        if connection.unreachable_refused == 1:
            log.warn(
                "ASAP_ENDPOINT_UNREACHABLE for PE 0x{pe:08x} of pool {pool} from {peer}"
                " refused: {reason} (further refusals on this connection are only counted)",
                pe=key[1],
                pool=handleText(key[0]),
                peer=connection.describe(),
                identity=connection.identity,
                cause=CauseCode.REJECTED_DUE_TO_SECURITY_CONSIDERATIONS.name,
                reason=reason,
            )


def _reporter(connection: ConnectionState) -> Reporter:
    if connection.identity is not None:
        return ("identity", connection.identity)
    if connection.peer_address is not None:
        return ("address", str(connection.peer_address))
    return ("connection", str(connection.number))
