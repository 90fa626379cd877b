"""Pools as Twisted endpoints: a pool user's side (:class:`PoolEndpoint`, an
``IStreamClientEndpoint``) and a pool element's side (:class:`PoolServerEndpoint`, an
``IStreamServerEndpoint`` that registers whatever it listens on as a pool element).

``PoolEndpoint.connect`` gives the protocol one RSerPool session with failover underneath
(RFC 5352 6.5.1): the protocol never sees a pool element die, the session resumes on another
one and sends again what the dead one had not acknowledged. With ``failover=False`` the
session ends when its pool element fails (SEND_NO_FAILOVER): the protocol's
``connectionLost`` fires, and a ``ClientService`` reconnects, to a pool element chosen
anew by the pool's policy. The ``rserpool:`` endpoint string (see
:mod:`twisted_rserpool.endpoints`) builds a ``PoolEndpoint`` with its own ``PoolUser``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.asap.delivery import SendOptions
from twisted_rserpool.asap.element import PoolElement, refusePlaintext
from twisted_rserpool.asap.errors import PlaintextRefused
from twisted_rserpool.asap.user import PoolUser, _reactor
from twisted_rserpool.describe import endpointText, handleText

__all__ = ["PoolEndpoint", "PoolListeningPort", "PoolServerEndpoint"]


@implementer(IStreamClientEndpoint)
class PoolEndpoint:
    """Connects to pool ``poolHandle`` through ``poolUser``: each ``connect`` is one session
    to a pool element the pool's policy chose.

    ``failover``: the session fails over to another pool element (default), or ends with
    its pool element. ``ppid`` and ``streaming`` are the session's (see
    :meth:`~twisted_rserpool.asap.user.PoolUser.connect`).

    With ``ownsPoolUser``, the endpoint starts ``poolUser`` at the first ``connect`` and
    stops it when the reactor shuts down (the ``rserpool:`` string makes such endpoints);
    otherwise the application runs the pool user as the service it is.
    """

    def __init__(
        self,
        poolUser: PoolUser,
        poolHandle: bytes,
        *,
        failover: bool = True,
        ppid: int = 0,
        streaming: bool = False,
        ownsPoolUser: bool = False,
        reactor: Any = None,
    ) -> None:
        if not poolHandle:
            raise ValueError("a pool handle is not empty")
        self.poolUser = poolUser
        self.poolHandle = poolHandle
        self.failover = failover
        self.ppid = ppid
        self.streaming = streaming
        self.ownsPoolUser = ownsPoolUser
        self._reactor = reactor
        self._shutdownTrigger = False

    def __repr__(self) -> str:
        pool = handleText(self.poolHandle)
        return f"<PoolEndpoint pool={pool} failover={'yes' if self.failover else 'no'}>"

    def _stopUser(self) -> Deferred[None] | None:
        return self.poolUser.stopService() if self.poolUser.running else None

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """A session to a pool element; fires with ``protocolFactory``'s protocol connected
        (its transport a :class:`~twisted_rserpool.asap.session.Session`), or errbacks with
        :class:`~twisted_rserpool.asap.errors.NoPoolElementAvailable`,
        :class:`~twisted_rserpool.asap.errors.ResolutionFailed` or
        :class:`~twisted_rserpool.asap.errors.RequestTimedOut`."""
        if self.ownsPoolUser and not self._shutdownTrigger:
            # No application runs this pool user as a service: its ENRP connection and
            # sessions are closed before the reactor stops.
            self._shutdownTrigger = True
            _reactor(self._reactor).addSystemEventTrigger("before", "shutdown", self._stopUser)
        options = SendOptions.SEND_FAILOVER if self.failover else SendOptions.SEND_NO_FAILOVER
        return self.poolUser.connect(
            self.poolHandle,
            protocolFactory,
            ppid=self.ppid,
            streaming=self.streaming,
            options=options,
        )


@implementer(IListeningPort)
class PoolListeningPort:
    """The port of a :class:`PoolServerEndpoint`: the wrapped endpoint's port, registered as
    :attr:`poolElement`. ``stopListening`` deregisters, then stops listening."""

    def __init__(self, poolElement: PoolElement, port: IListeningPort) -> None:
        self.poolElement = poolElement
        self.port = port

    def __repr__(self) -> str:
        pool = handleText(self.poolElement.poolHandle)
        return f"<PoolListeningPort pool={pool} pe=0x{self.poolElement.peIdentifier:08x}>"

    def startListening(self) -> None:
        """Nothing: the port listens from the start."""

    def stopListening(self) -> Deferred[None]:
        """Deregister (waiting at most T3), stop listening and close every session."""
        return self.poolElement.stopService()

    def getHost(self) -> IAddress:
        """The address listened on."""
        return self.port.getHost()


@implementer(IStreamServerEndpoint)
class _Recorded:
    """``wrapped``, telling ``listened`` how its ``listen`` ended."""

    def __init__(self, wrapped: IStreamServerEndpoint, listened: Deferred[IListeningPort]):
        self.wrapped = wrapped
        self.listened = listened

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        def done(result: IListeningPort | Failure) -> IListeningPort | Failure:
            if isinstance(result, Failure):
                self.listened.errback(result)
            else:
                self.listened.callback(result)
            return result

        return self.wrapped.listen(protocolFactory).addBoth(done)


@implementer(IStreamServerEndpoint)
class PoolServerEndpoint:
    """Listens on ``listeningEndpoint`` (any stream server endpoint, or a server string) and
    registers the address it got as a pool element of ``poolHandle`` at ``enrpServers``.

    ``listen(factory)`` fires with a :class:`PoolListeningPort` once listening; the
    registration goes on in the background (``port.poolElement.whenRegistered()``). Each
    connection speaks the RSerPool TCP mapping, ``factory``'s protocol running over it as
    for any :class:`~twisted_rserpool.asap.element.PoolElement`; the keyword arguments
    (``policy``, ``registrationLife``, ``advertise``, ``timers``...) are the pool
    element's. So ``StreamServerEndpointService`` or ``strports`` serve a pool as they
    serve a port. A listening endpoint without TLS fails ``listen`` with
    :class:`~twisted_rserpool.asap.errors.PlaintextRefused` unless ``insecure=True``.
    """

    def __init__(
        self,
        listeningEndpoint: IStreamServerEndpoint | str,
        poolHandle: bytes,
        enrpServers: Sequence[IStreamClientEndpoint | str],
        *,
        reactor: Any = None,
        **poolElementOptions: Any,
    ) -> None:
        if not poolHandle:
            raise ValueError("a pool handle is not empty")
        if not enrpServers:
            raise ValueError("a pool element needs at least one ENRP server")
        self.listeningEndpoint = listeningEndpoint
        self.poolHandle = poolHandle
        self.enrpServers = list(enrpServers)
        self.reactor = reactor
        self.poolElementOptions = poolElementOptions

    def __repr__(self) -> str:
        pool = handleText(self.poolHandle)
        return f"<PoolServerEndpoint pool={pool} on {endpointText(self.listeningEndpoint)}>"

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Listen, register as a pool element serving ``protocolFactory``; fires with the
        :class:`PoolListeningPort` once listening (errbacks if listening failed)."""
        return self.listenPool(protocolFactory).addCallback(lambda port: port)

    def listenPool(self, protocolFactory: IProtocolFactory) -> Deferred[PoolListeningPort]:
        """:meth:`listen`, typed for callers that want the pool element."""
        endpoint = self.listeningEndpoint
        try:
            refusePlaintext(endpoint, bool(self.poolElementOptions.get("insecure", False)))
        except PlaintextRefused:
            return fail()
        if isinstance(endpoint, str):
            from twisted.internet.endpoints import serverFromString  # noqa: PLC0415

            endpoint = serverFromString(_reactor(self.reactor), endpoint)  # type: ignore[no-untyped-call]
        assert not isinstance(endpoint, str)
        listened: Deferred[IListeningPort] = Deferred()
        element = PoolElement(
            self.poolHandle,
            protocolFactory,
            self.enrpServers,
            _Recorded(endpoint, listened),
            reactor=self.reactor,
            **self.poolElementOptions,
        )
        element.startService()

        def failed(failure: Failure) -> Failure:
            element.stopService()
            return failure

        return listened.addCallbacks(lambda port: PoolListeningPort(element, port), failed)
