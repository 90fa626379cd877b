"""Keep-alives to the PEs registered here (RFC 5352 3.5, RFC 5355 2.14). Sans-IO.

:class:`KeepAlives` asks every PE whose home is this server with an
ASAP_ENDPOINT_KEEP_ALIVE over its own connection, at the interval spread by +/- 50 %, and
within the PE's keep-alive rate; the handlespace removes a PE whose keep-alive goes
unanswered. It also sends the probes that unreachable reports and ENRP peers ask for.
"""

from __future__ import annotations

from twisted_rserpool.deadline import DeadlineQueue
from twisted_rserpool.enrp.registrarstate import ConnectionState, PoolElementKey, RegistrarState
from twisted_rserpool.security.ratelimit import RateLimiter
from twisted_rserpool.wire import asap


class KeepAlives:
    """When each PE registered here is asked next, and the asking."""

    def __init__(self, state: RegistrarState) -> None:
        self._state = state
        self._due: DeadlineQueue[PoolElementKey] = DeadlineQueue()
        self._limiter: RateLimiter[PoolElementKey] = RateLimiter(state.config.keep_alive_rate)
        # The queue's next deadline, asked after every message: kept until the queue changes.
        self._next: float | None = None
        self._next_known = True
        #: The ASAP_ENDPOINT_KEEP_ALIVE of each PE asked before (messages are immutable,
        #: so one serves every keep-alive to it), until the PE is forgotten.
        self._messages: dict[PoolElementKey, asap.EndpointKeepAlive] = {}

    def schedule(self, key: PoolElementKey, now: float) -> None:
        """Ask the PE ``key`` again one keep-alive interval from ``now``."""
        # RFC 5352 3.5: spread keep-alives by +/- 50 % so they do not come in bursts.
        interval = self._state.config.keep_alive_interval * self._state.rng.uniform(0.5, 1.5)
        self._due.schedule(key, now + interval)
        self._next_known = False

    def forget(self, key: PoolElementKey) -> None:
        """The PE is no longer registered here."""
        self._due.cancel(key)
        self._next_known = False
        self._limiter.forget(key)
        self._messages.pop(key, None)

    def next_deadline(self) -> float | None:
        """When :meth:`send_due` next has a keep-alive to send, or ``None``."""
        if not self._next_known:
            self._next = self._due.next_deadline()
            self._next_known = True
        return self._next

    def send_due(self, now: float) -> None:
        """Send the keep-alives due by ``now`` and schedule the next ones."""
        registered = self._state.registered
        self._next_known = False
        for key in list(self._due.pop_due(now)):
            if key in registered:
                self._send(key, now)
                self.schedule(key, now)

    def _send(self, key: PoolElementKey, now: float) -> bool:
        state = self._state
        registered = state.registered.get(key)
        if registered is None or registered.connection not in state.connections:
            return False
        if not self._limiter.allow(key, now):
            state.counters["keep_alives_rate_limited"] += 1
            return False
        config = state.config
        message = self._messages.get(key)
        if message is None:
            # The PE identifier (as RSPLIB sends it) says which PE of the pool is asked.
            message = self._messages[key] = asap.EndpointKeepAlive(
                config.server_identifier, key[0], home=False, pe_identifier=key[1]
            )
        state.send(registered.connection, message)
        state.handlespace.keep_alive_sent(
            key[0], key[1], now=now, timeout=config.keep_alive_timeout
        )
        state.counters["keep_alives_sent"] += 1
        return True

    def probe(self, key: PoolElementKey, now: float, *, urgent: bool) -> None:
        """Ask the PE with a keep-alive; unanswered, the keep-alive timeout removes it.

        ``urgent``: when its keep-alive rate does not allow it now, ask as soon as it does.
        """
        state = self._state
        entry = state.handlespace.get(*key)
        if entry is None or entry.keep_alive_deadline is not None:
            return  # gone, or a keep-alive is already waiting for its answer
        if self._send(key, now):
            state.counters["unreachable_probes"] += 1
        elif urgent and key in state.registered:
            # RFC 5355 2.14: not faster than the PE's keep-alive rate, but soon.
            state.counters["unreachable_probes_deferred"] += 1
            self._due.schedule(key, now + 1.0 / state.config.keep_alive_rate.per_second)
            self._next_known = False

    def acknowledged(self, connection: ConnectionState, message: asap.EndpointKeepAliveAck) -> None:
        """An ASAP_ENDPOINT_KEEP_ALIVE_ACK arrived on ``connection``."""
        state = self._state
        handlespace = state.handlespace
        key = (message.pool_handle, message.pe_identifier)
        registered = state.registered.get(key)
        entry = handlespace.get(*key)
        if registered is None and entry is None:
            # A late answer from a PE we removed (its keep-alive timed out): tell it, as for
            # an expiry, so that it registers again instead of waiting for its T4.
            state.counters["keep_alive_acks_unmatched"] += 1
            state.send(connection.number, asap.DeregistrationResponse(*key))
            return
        if registered is None or registered.connection != connection.number:
            # Only the PE's own association may vouch for it.
            state.counters["keep_alive_acks_ignored"] += 1
            return
        if entry is not None and entry.unreachable_reports:
            # A sign of life: the reports were wrong (handlespace clears the count).
            state.counters["unreachable_reports_cleared"] += 1
        handlespace.keep_alive_acknowledged(*key)
        state.counters["keep_alive_acks"] += 1
