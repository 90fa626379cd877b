"""Sends that are not one session to one pool: ASAP_SEND_TO_ALL and ASAP_SEND_TO_SELF
(RFC 5352 6.5.5), and the pool element parameter a send by transport address (6.5.4) uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_rserpool.asap.delivery import PoolElementHandle, SendOptions, UndeliveredMessage
from twisted_rserpool.asap.errors import AsapError, DeliveryFailed
from twisted_rserpool.describe import handleText
from twisted_rserpool.wire.parameters import (
    PoolElementParameter,
    RoundRobinPolicy,
    TcpTransport,
)

if TYPE_CHECKING:
    from twisted_rserpool.asap.user import PoolUser

__all__ = ["FanOutReport", "addressElement", "sendToAll"]

log = Logger()


def addressElement(transport: TcpTransport, peIdentifier: int = 0) -> PoolElementParameter:
    """A stand-in pool element at ``transport`` for a send by transport address (6.5.4) or
    to a PE handle that is not in the cache; identifier 0 means none is known."""
    return PoolElementParameter(
        pe_identifier=peIdentifier,
        home_server_identifier=0,
        registration_life=0,
        user_transport=transport,
        policy=RoundRobinPolicy(),
    )


@dataclass(frozen=True, slots=True)
class FanOutReport:
    """What became of one ASAP_SEND_TO_ALL: the PEs that acknowledged their copy, and one
    :class:`~twisted_rserpool.asap.errors.DeliveryFailed` per PE that did not (its
    ``undelivered`` holds the copy: nothing is dropped silently)."""

    pool_handle: bytes
    delivered: tuple[PoolElementHandle, ...]
    failed: tuple[DeliveryFailed, ...]


class _Copy(Protocol):
    """The application side of one copy's session: it only waits for the end."""

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.ended.called:
            self.reason = reason
            self.ended.callback(None)


def _own(user: PoolUser, poolHandle: bytes) -> list[PoolElementParameter]:
    return [
        pe.element
        for pe in user.ownPoolElements
        if pe.poolHandle == poolHandle and pe.element is not None
    ]


async def sendToAll(
    user: PoolUser, poolHandle: bytes, data: bytes, options: SendOptions, ppid: int = 0
) -> FanOutReport:
    """Send a copy of ``data`` to every PE of ``poolHandle`` (resolved afresh), ours only
    with SEND_TO_SELF (a loop-back through our own user transport, like any PU's)."""
    from twisted_rserpool.asap.session import Session  # noqa: PLC0415 (session imports us)

    message = UndeliveredMessage(bytes(data), ppid, options)
    try:
        elements = list(await user.resolve(poolHandle, refresh=True))
    except AsapError as e:
        e.undelivered = (message,)  # the report still carries the message (6.7)
        raise
    own = _own(user, poolHandle)
    ownIds = {pe.pe_identifier for pe in own}
    if options & SendOptions.SEND_TO_SELF:
        known = {pe.pe_identifier for pe in elements}
        elements += [pe for pe in own if pe.pe_identifier not in known]
    else:
        elements = [pe for pe in elements if pe.pe_identifier not in ownIds]

    async def one(element: PoolElementParameter) -> DeliveryFailed | None:
        handle = PoolElementHandle.of(poolHandle, element)
        copy = _Copy()
        session = Session(
            user, poolHandle, copy, ppid, options=SendOptions.SEND_NO_FAILOVER, canFailOver=False
        )
        try:
            connection = await session._open(element)
        except Exception as e:
            failed = DeliveryFailed(handle, str(e))
            failed.undelivered = (message,)
            return failed
        user.sessions.add(session)
        session._attach(connection)
        copy.makeConnection(session)  # type: ignore[no-untyped-call]
        session.send(data)
        session.loseConnection()
        await copy.ended
        reason = copy.reason
        if reason is not None and reason.check(AsapError):  # type: ignore[no-untyped-call]
            error = reason.value
            failed = DeliveryFailed(handle, str(error))
            failed.undelivered = (message,)
            return failed
        return None

    results = await gatherResults([Deferred.fromCoroutine(one(pe)) for pe in elements])
    failed = tuple(r for r in results if r is not None)
    delivered = tuple(
        PoolElementHandle.of(poolHandle, pe)
        for pe, r in zip(elements, results, strict=True)
        if r is None
    )
    if failed:
        log.warn(
            "ASAP_SEND_TO_ALL to pool {pool}: {failed} of {count} copies not delivered",
            pool=handleText(poolHandle),
            failed=len(failed),
            count=len(elements),
        )
    return FanOutReport(poolHandle, delivered, failed)
