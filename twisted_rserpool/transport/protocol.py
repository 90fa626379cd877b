"""The Twisted protocol that carries ASAP, ENRP and application data over the TCP mapping.

:class:`RSerPoolProtocol` runs a :class:`~twisted_rserpool.transport.connection.MappingConnection`
over any stream transport (TCP, TLS, UNIX) and is the base class of the ENRP server, the
pool element and the pool user. It decodes DATA by PPID (11 ASAP, 12 ENRP, any other
application data) and calls one hook per message; it answers malformed messages, sends
heartbeats and closes dead connections.

Security rule: no ASAP/ENRP message and no application data reaches a hook before
:meth:`RSerPoolProtocol.connectionReady`, which comes once the peer's INIT arrived and, on a
TLS transport, the TLS handshake completed. Sending is refused until then too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from OpenSSL import SSL
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_rserpool.deadline import COALESCE, DeadlineTimer
from twisted_rserpool.security.context import INSECURE, SecurityContext
from twisted_rserpool.security.tls import securityContextOf
from twisted_rserpool.transport.admission import ConnectionCap, ThrottledLog
from twisted_rserpool.transport.connection import (
    LocalProtocolError,
    MappingConfig,
    MappingConnection,
    SendBufferFull,
)
from twisted_rserpool.transport.events import (
    DataAcknowledged,
    DataReceived,
    Event,
    HeartbeatTimeout,
    InitReceived,
    ProtocolError,
    SentData,
)
from twisted_rserpool.wire import asap, enrp
from twisted_rserpool.wire.errors import CauseCode, MalformedMessage
from twisted_rserpool.wire.limits import DEFAULT_LIMITS, Limits
from twisted_rserpool.wire.message import Message
from twisted_rserpool.wire.parameters import ErrorCause, OperationError
from twisted_rserpool.wire.tcpmapping import ASAP_PPID, ENRP_PPID

__all__ = ["ConnectionNotReady", "RSerPoolFactory", "RSerPoolProtocol"]

_PROTOCOL_NAMES = {ASAP_PPID: "ASAP", ENRP_PPID: "ENRP"}
#: Received bytes decoded at a time: when a chunk must wait, what follows it in the same
#: read stays raw (a TCP read brings up to 64 KiB).
_SLICE = 4096
_ERROR_TYPES = {ASAP_PPID: asap.AsapType.ERROR, ENRP_PPID: enrp.EnrpType.ERROR}


class ConnectionNotReady(LocalProtocolError):
    """A message was to be sent before :meth:`RSerPoolProtocol.connectionReady` or after
    the connection was lost."""


def _describePeer(transport: Any) -> str:
    try:
        address = transport.getPeer()
    except Exception:
        return "unknown peer"
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _tlsHandshakeFinished(transport: Any) -> bool:
    """Whether OpenSSL says both Finished messages of the transport's handshake went by."""
    try:
        handle = transport.getHandle()
        return (
            isinstance(handle, SSL.Connection)
            and handle.get_finished() is not None
            and handle.get_peer_finished() is not None
        )
    except Exception:
        return False


@implementer(IHandshakeListener)
class RSerPoolProtocol(Protocol):
    """One RSerPool connection over the TCP mapping; subclass it and override the hooks.

    Hooks, each called only after :meth:`connectionReady`: :meth:`asapMessageReceived`,
    :meth:`enrpMessageReceived`, :meth:`applicationMessageReceived` (by default passing
    the data on to :meth:`applicationDataReceived`, without the U flag),
    :meth:`malformedMessageReceived` (except for a broken mapping, reported whenever it
    happens), :meth:`messagesAcknowledged` (by default :meth:`dataAcknowledged` for each
    message). A hook that raises is logged; the message still counts as delivered (it is
    acknowledged) and the connection goes on. The ACKs of the messages delivered while
    one read is handled leave together, after them, in the write that ends the read.
    Before each DATA chunk is decoded, :meth:`admitData` may make it wait: backpressure
    against a flooding peer, whose transport stops being read meanwhile; a protocol that
    does not override it has every chunk of a read decoded in one pass.

    Configuration (class attributes; override them in a subclass, on the instance before
    the connection is made, or through :class:`RSerPoolFactory`):

    - :attr:`mappingConfig`: sizes and timers of the TCP mapping (chunk length, buffers,
      unacknowledged data, heartbeat interval and timeout), a
      :class:`~twisted_rserpool.transport.connection.MappingConfig`.
    - :attr:`messageLimits`: bounds for decoding ASAP and ENRP messages.
    - :attr:`enrpServerIdentifier` / :attr:`peerEnrpServerIdentifier`: the server
      identifiers written into the ENRP_ERROR messages this protocol sends.
    - :attr:`handshakeTimeout`: seconds from the connection's start within which it must
      become ready (TLS handshake completed and the peer's INIT received); a connection
      that is not is aborted and logged (RFC 5355 section 2.1). ``None``: no deadline.

    The clock (``IReactorTime``) drives the heartbeat and the deadline; by default the
    global reactor.
    """

    log = Logger()

    # The per-connection state in slots: a server holds thousands of these, and CPython
    # shares instance dictionary keys only up to 30 attributes a class (beyond, each
    # instance gets its own 1.6 KiB dictionary). Subclasses keep a dictionary of their own.
    __slots__ = (
        "_admissionTimer",
        "_admitsAll",
        "_batching",
        "_closing",
        "_handshakeDone",
        "_headAdmitted",
        "_held",
        "_lastDelivered",
        "_lost",
        "_onTls",
        "_readingPaused",
        "_ready",
        "_readyBy",
        "_timer",
        "_unread",
        "admittedBy",
        "clock",
        "peer",
        "readingPauses",
    )

    mappingConfig: MappingConfig = MappingConfig()
    messageLimits: Limits = DEFAULT_LIMITS
    enrpServerIdentifier: int = 0
    peerEnrpServerIdentifier: int = 0
    handshakeTimeout: float | None = None

    #: The connection's security, set just before :meth:`connectionReady`; ``None`` before.
    securityContext: SecurityContext | None = None
    #: The sans-IO TCP mapping state, created in :meth:`connectionMade`.
    mapping: MappingConnection | None = None

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self.clock: IReactorTime | None = clock
        self._onTls = False
        self._handshakeDone = False
        self._ready = False
        self._closing = False
        self._lost = False
        self._batching = False
        # DATA chunks waiting in arrival order (for readiness or admitData); a deque only
        # while some wait (an empty one costs 760 bytes, on every one of thousands).
        self._held: deque[DataReceived] | None = None
        # The last DATA delivered and not yet acknowledged: its ACK and those of the ones
        # before it are written together (_flush).
        self._lastDelivered: DataReceived | None = None
        # Without an admitData of its own nothing ever waits: a read is decoded whole.
        self._admitsAll = type(self).admitData is RSerPoolProtocol.admitData
        # Backpressure: the timer until the first held chunk, already admitted, is
        # delivered, and whether we asked the transport to stop reading.
        self._admissionTimer: IDelayedCall | None = None
        self._headAdmitted = False
        self._readingPaused = False
        # Bytes read while a chunk waits, not yet fed to the mapping: kept raw, they cost
        # neither parsing nor the memory of decoded chunks.
        self._unread = bytearray()
        #: How often reading from the transport was paused because a chunk had to wait.
        self.readingPauses = 0
        # One timer for the heartbeat and the handshake deadline, on the clock's shared call.
        self._timer = DeadlineTimer(self._timerFired, slack=COALESCE)
        #: When the connection must be ready (handshakeTimeout), until it is.
        self._readyBy: float | None = None
        #: The cap that admitted this connection (told when it is lost), if any.
        self.admittedBy: ConnectionCap | None = None
        self.peer = "unknown peer"

    @property
    def heartbeatInterval(self) -> float | None:
        """Seconds without received bytes after which a HEARTBEAT is sent (``None``: never)."""
        return self.mappingConfig.heartbeat_interval

    @property
    def heartbeatTimeout(self) -> float:
        """Seconds after a HEARTBEAT within which any byte from the peer must arrive."""
        return self.mappingConfig.heartbeat_timeout

    @property
    def ready(self) -> bool:
        """Whether :meth:`connectionReady` was called and the connection is not lost."""
        return self._ready and not self._lost

    # -- hooks ----------------------------------------------------------------------------

    def connectionReady(self, securityContext: SecurityContext) -> None:
        """The mapping is up and, on TLS, the handshake completed: messages may flow.

        Called once per connection, with the same value as :attr:`securityContext`
        (:data:`~twisted_rserpool.security.context.INSECURE` without TLS).
        """

    def asapMessageReceived(self, message: asap.AsapMessage) -> None:
        """The peer sent a valid ASAP message (PPID 11)."""

    def enrpMessageReceived(self, message: enrp.EnrpMessage) -> None:
        """The peer sent a valid ENRP message (PPID 12)."""

    def applicationDataReceived(self, ppid: int, data: bytes) -> None:
        """The peer sent application data with a PPID other than 11 and 12."""

    def applicationMessageReceived(self, ppid: int, data: bytes, unordered: bool) -> None:
        """The peer sent application data with a PPID other than 11 and 12 in a DATA chunk
        whose U flag was ``unordered``. Calls :meth:`applicationDataReceived` unless
        overridden: override this hook to see the flag, that one (as before) when it does
        not matter."""
        self.applicationDataReceived(ppid, data)

    def dataAcknowledged(self, sent: SentData) -> None:
        """The peer acknowledged delivery of a message we sent."""

    def messagesAcknowledged(self, sent: Sequence[SentData]) -> None:
        """The peer acknowledged delivery of these messages we sent, oldest first (the ACKs
        that arrived together; a :class:`~twisted_rserpool.transport.events.SentRun`,
        whose :class:`SentData` are made only if looked at). Calls
        :meth:`dataAcknowledged` for each unless overridden: override this one to retire
        them together."""
        for one in sent:
            self._callHook(self.dataAcknowledged, one)

    def admitData(self, event: DataReceived, now: float) -> float:
        """Seconds to wait before the DATA chunk ``event`` is decoded and delivered.

        Asked once per received DATA chunk, in order, once the connection is ready and
        before anything of its message is decoded. ``0.0`` (the default) delivers it now.
        A positive answer is backpressure: reading from the transport pauses
        (``pauseProducing``), this chunk and those behind it wait undecoded and
        unacknowledged, and it is delivered when the time has passed (the next one is
        then asked about); reading resumes when nothing waits any more. Nothing is
        dropped; what can wait is bounded by the mapping's ``max_undelivered_bytes``
        (beyond it the connection is closed for Lack of Resources, and logged).
        """
        return 0.0

    def malformedMessageReceived(self, error: MalformedMessage, ppid: int | None) -> None:
        """Input from the peer did not decode; ``error`` says why.

        ``ppid`` is 11 or 12 for an ASAP or ENRP message that did not decode, and ``None``
        when the TCP mapping itself broke (framing, chunk order, limits): the connection is
        then unusable and closed after this hook whatever it does.

        By default an ASAP/ENRP error the RFC asks to report is answered with an
        ASAP_ERROR / ENRP_ERROR carrying its cause, other malformed messages are discarded,
        and a broken mapping closes the connection; every case is logged.
        """
        if ppid is None:
            self.log.warn(
                "Closing connection from {peer}: TCP mapping failed: {cause}",
                peer=self.peer,
                cause=error.reason,
                code=int(error.cause),
            )
            self._close()
            return
        protocol = _PROTOCOL_NAMES.get(ppid, "RSerPool")
        if not error.report:
            self.log.info(
                "Discarded malformed {protocol} message from {peer}: {cause}",
                protocol=protocol,
                peer=self.peer,
                ppid=ppid,
                cause=error.reason,
                code=int(error.cause),
            )
            return
        self.log.info(
            "Malformed {protocol} message from {peer}: {cause}; answering with an error",
            protocol=protocol,
            peer=self.peer,
            ppid=ppid,
            cause=error.reason,
            code=int(error.cause),
        )
        self.sendOperationError(ppid, OperationError.from_malformed(error))

    def buildSecurityContext(self) -> SecurityContext:
        """The security of this connection, asked for once the TLS handshake completed.

        Without TLS: :data:`~twisted_rserpool.security.context.INSECURE`. Over TLS: what
        :func:`~twisted_rserpool.security.tls.securityContextOf` reads from the handshake
        (version, cipher, PSK identity or verified certificate). Override to decide otherwise.
        """
        if not self._onTls:
            return INSECURE
        return securityContextOf(self.transport)

    # -- sending --------------------------------------------------------------------------

    def sendAsap(self, message: asap.AsapMessage) -> SentData:
        """Send an ASAP message (PPID 11)."""
        return self._send(message.encode(), ASAP_PPID)

    def sendEnrp(self, message: enrp.EnrpMessage) -> SentData:
        """Send an ENRP message (PPID 12)."""
        return self._send(message.encode(), ENRP_PPID)

    def sendApplicationData(
        self, data: bytes, ppid: int = 0, *, streamIdentifier: int = 0, unordered: bool = False
    ) -> SentData:
        """Send application data with ``ppid`` (not 11 or 12, which belong to ASAP and ENRP)."""
        if ppid in _PROTOCOL_NAMES:
            raise ValueError(f"PPID {ppid} is reserved for {_PROTOCOL_NAMES[ppid]}")
        return self._send(data, ppid, streamIdentifier, unordered)

    def sendOperationError(self, ppid: int, error: OperationError) -> None:
        """Report ``error`` to the peer in an ASAP_ERROR (``ppid`` 11) or ENRP_ERROR (12)."""
        if ppid == ASAP_PPID:
            self.sendAsap(asap.ErrorMessage(error))
        elif ppid == ENRP_PPID:
            self.sendEnrp(
                enrp.ErrorMessage(self.enrpServerIdentifier, self.peerEnrpServerIdentifier, error)
            )
        else:
            raise ValueError(f"PPID {ppid} has no error message")

    def unacknowledged(self) -> tuple[SentData, ...]:
        """What we sent that the peer has not acknowledged, oldest first; still available
        after the connection was lost, for failover."""
        return () if self.mapping is None else self.mapping.unacknowledged()

    def _send(
        self, data: bytes, ppid: int, streamIdentifier: int = 0, unordered: bool = False
    ) -> SentData:
        mapping = self.mapping
        if mapping is None or not self.ready or mapping.closed:
            raise ConnectionNotReady("the connection is not ready for messages")
        try:
            sent = mapping.send_data(
                data, ppid=ppid, stream_identifier=streamIdentifier, unordered=unordered
            )
        except SendBufferFull as error:
            self.log.warn(
                "Closing connection to {peer}: it does not acknowledge what it receives: {cause}",
                peer=self.peer,
                ppid=ppid,
                cause=str(error),
            )
            self._abort()
            raise
        if not self._batching:
            self._flush()
        return sent

    # -- Twisted interface ----------------------------------------------------------------

    def connectionMade(self) -> None:
        """Send our INIT and start the heartbeat timer and the handshake deadline."""
        if self.clock is None:
            # Imported here, not at module level, so that importing never installs a reactor.
            from twisted.internet import reactor  # noqa: PLC0415

            self.clock = reactor
        self.peer = _describePeer(self.transport)
        self._onTls = ISSLTransport.providedBy(self.transport)
        self._handshakeDone = not self._onTls
        self.mapping = MappingConnection(self.mappingConfig, now=self._now())
        if self.handshakeTimeout is not None:
            self._readyBy = self._now() + self.handshakeTimeout
        self._flush()
        self._armTimer()

    def handshakeCompleted(self) -> None:
        """The TLS handshake completed: the connection may become ready."""
        if self._handshakeDone:
            # A renegotiation: the context of a ready connection does not change.
            return
        self._handshakeDone = True
        self._batching = True
        try:
            self._becomeReadyIfPossible()
        finally:
            self._batching = False
            self._flush()

    def dataReceived(self, data: bytes) -> None:
        """Feed the TCP mapping; never raises."""
        mapping = self.mapping
        # _stopped(), inlined: asked for every read.
        if (
            mapping is None
            or mapping.closed
            or self._lost
            or self._closing
            or getattr(self.transport, "disconnecting", False)
        ):
            return
        # What hooks send while this read is handled goes out in one write at the end.
        self._batching = True
        try:
            if (
                self._admissionTimer is None
                and not self._unread
                and (len(data) <= _SLICE or self._admitsAll)
            ):
                self._handleEvents(mapping.receive_data(data, self.clock.seconds()))  # type: ignore[union-attr]
            else:
                self._unread += data
            if self._held is not None or self._unread or self._readingPaused:
                self._pump()  # otherwise nothing waits and nothing is paused: it does nothing
            self._armTimer()
        except Exception:
            self.log.failure(
                "Closing connection from {peer}: unexpected error", peer=self.peer, cause="bug"
            )
            self._abort()
        finally:
            self._batching = False
            self._flush()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop the timer; :meth:`unacknowledged` stays available."""
        self._lost = True
        self._held = None
        self._unread.clear()
        self._cancelAdmission()
        self._readyBy = None
        self._timer.cancel()
        if self.admittedBy is not None:
            self.admittedBy.discard(self)
        if self.mapping is not None:
            self.mapping.close()

    # -- internals ------------------------------------------------------------------------

    def _now(self) -> float:
        assert self.clock is not None
        return self.clock.seconds()

    def _stopped(self) -> bool:
        return self._lost or self._closing or bool(getattr(self.transport, "disconnecting", False))

    def _flush(self) -> None:
        mapping = self.mapping
        if mapping is None or self.transport is None:
            return
        last, self._lastDelivered = self._lastDelivered, None
        if last is not None:
            mapping.acknowledge_through(last)
        data = mapping.data_to_send()
        if data and not self._lost:
            self.transport.write(data)

    def _close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        if self.mapping is not None:
            self._flush()
            self.mapping.close()
        self._armTimer()  # no more heartbeats; the handshake deadline stays
        assert self.transport is not None
        self.transport.loseConnection()

    def _abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        if self.mapping is not None:
            self.mapping.close()
        self._armTimer()
        transport = self.transport
        assert transport is not None
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.loseConnection()

    def _handleEvents(self, events: list[Event]) -> None:
        if events and isinstance(events[-1], ProtocolError | HeartbeatTimeout):
            # The stream can no longer be trusted, and nothing could be answered: the
            # messages that came with the fault are discarded.
            events = [e for e in events if not isinstance(e, DataReceived | InitReceived)]
        # The hooks messages go to, looked up once per read.
        application = self.applicationMessageReceived
        asapHook = self.asapMessageReceived
        asapDecode = asap.decode
        for event in events:
            if type(event) is DataReceived:
                # _stopped(), inlined: asked for every message.
                if self._lost or self._closing or getattr(self.transport, "disconnecting", False):
                    continue
                if self._held is None and self._ready and self._admissionTimer is None:
                    # Nothing waits: asked and delivered without the queue.
                    if self._admitsAll or self._admitted(event):
                        ppid = event[2]
                        if ppid == ASAP_PPID:
                            # _deliver, _deliverMessage and _callHook inlined for the
                            # valid ASAP message (every request to an ENRP server).
                            try:
                                message = asapDecode(event[1], self.messageLimits)
                            except MalformedMessage:
                                self._deliver(event)  # decodes it again, and reports it
                                continue
                            if message.unrecognized_parameters and not isinstance(
                                message, asap.ErrorMessage
                            ):
                                self._reportUnrecognized(ppid, message.unrecognized_parameters)
                            if not self._lost:
                                try:
                                    asapHook(message)
                                except Exception:
                                    self._hookFailed(asapHook)
                            self._lastDelivered = event
                            continue
                        if ppid == ENRP_PPID:
                            self._deliver(event)
                            continue
                        # _deliver and _callHook inlined: the path of every application
                        # message (the checks above stand for theirs).
                        try:
                            application(ppid, event[1], event[4])
                        except Exception:
                            self._hookFailed(application)
                        # Acknowledged with the others of this read when it ends (_flush).
                        self._lastDelivered = event
                    else:
                        self._held = deque((event,))  # its wait is running
                else:
                    # In arrival order: behind chunks that wait (for readiness or a token).
                    if self._held is None:
                        self._held = deque()
                    self._held.append(event)
                    self._dispatchHeld()
            elif isinstance(event, DataAcknowledged):
                cls = type(self)
                if (
                    cls.messagesAcknowledged is _DEFAULT_MESSAGES_ACKNOWLEDGED
                    and cls.dataAcknowledged is _DEFAULT_DATA_ACKNOWLEDGED
                    and _ACK_HOOKS.isdisjoint(self.__dict__)
                ):
                    # Neither hook overridden (by the class or on the instance): the
                    # default would call a no-op per message.
                    continue
                self._callHook(self.messagesAcknowledged, event.sent)
            elif isinstance(event, InitReceived):
                self._becomeReadyIfPossible()
            elif isinstance(event, ProtocolError):
                self._mappingFailed(event)
            elif isinstance(event, HeartbeatTimeout):
                self._heartbeatTimedOut(event)

    def _becomeReadyIfPossible(self) -> None:
        mapping = self.mapping
        if not self._handshakeDone and _tlsHandshakeFinished(self.transport):
            # A wrapper between the TLS layer and us (a policies.ProtocolWrapper) swallowed
            # handshakeCompleted; OpenSSL itself says the handshake is over.
            self._handshakeDone = True
        if (
            self._ready
            or not self._handshakeDone
            or mapping is None
            or mapping.peer_data_format is None
            or self._stopped()
        ):
            return
        try:
            context = self.buildSecurityContext()
        except Exception:
            self.log.failure(
                "Closing connection from {peer}: its security context cannot be determined",
                peer=self.peer,
                cause="security context",
            )
            self._abort()
            return
        self.securityContext = context
        self._ready = True
        self._cancelReadyDeadline()
        self.log.debug(
            "Connection with {peer} ready: " + context.logFormat(),
            peer=self.peer,
            **context.logFields(),
        )
        self._callHook(self.connectionReady, context)
        # Not _pump: when the INIT came in a slice, the slices after it wait their turn.
        self._dispatchHeld()

    def _pump(self) -> None:
        """Deliver what may be delivered, and feed the bytes kept raw to the mapping a
        slice at a time while no chunk waits; resume reading once nothing is left."""
        mapping = self.mapping
        if mapping is None:
            return
        unread = self._unread
        while not self._stopped() and not mapping.closed:
            self._dispatchHeld()
            if self._admissionTimer is not None or not unread:
                break
            # A slice, so that a wait found early leaves the rest of the read undecoded.
            piece = bytes(unread[:_SLICE])
            del unread[:_SLICE]
            self._handleEvents(mapping.receive_data(piece, self._now()))
        if mapping.closed or self._stopped():
            unread.clear()
        elif len(unread) > mapping.config.max_undelivered_bytes:
            unread.clear()
            self._mappingFailed(
                ProtocolError(
                    MalformedMessage(
                        f"more than {mapping.config.max_undelivered_bytes} bytes received "
                        "while its earlier requests wait for their rate",
                        CauseCode.LACK_OF_RESOURCES,
                        report=False,
                    )
                )
            )
        elif not self._held and not unread:
            self._resumeReading()

    def _dispatchHeld(self) -> None:
        """Deliver held DATA chunks in order while :meth:`admitData` lets them through;
        pause reading when one must wait."""
        held = self._held
        if held is None:
            return
        while held and self._ready and not self._stopped():
            if self._admissionTimer is not None:
                return  # the first one waits for its time; the others wait behind it
            if not self._headAdmitted and not self._admitted(held[0]):
                return
            self._headAdmitted = False
            self._deliver(held.popleft())
        if not held and self._held is held:
            self._held = None

    def _admitted(self, event: DataReceived) -> bool:
        """Whether :meth:`admitData` lets ``event``, the first in line, through now;
        otherwise its wait has begun (reading paused, the timer set)."""
        now = self._now()
        try:
            wait = float(self.admitData(event, now))
        except Exception:
            self.log.failure(
                "admitData raised on the connection with {peer}; delivering",
                peer=self.peer,
                cause="exception in hook",
            )
            return True
        if wait > 0:
            self._headAdmitted = True
            self._waitForAdmission(now, wait)
            return False
        return True

    def _waitForAdmission(self, now: float, wait: float) -> None:
        if not self._readingPaused:
            self._readingPaused = True
            self.readingPauses += 1
            assert self.mapping is not None
            self.mapping.pause_reading(now)
            # Over TLS, TLSMemoryBIOProtocol passes this on to the TCP transport.
            pause = getattr(self.transport, "pauseProducing", None)
            if pause is not None:
                pause()
        assert self.clock is not None
        self._admissionTimer = self.clock.callLater(wait, self._admissionDue)

    def _admissionDue(self) -> None:
        self._admissionTimer = None
        if self._stopped():
            return
        self._batching = True
        try:
            self._pump()
            self._armTimer()
        except Exception:
            self.log.failure(
                "Closing connection with {peer}: unexpected error", peer=self.peer, cause="bug"
            )
            self._abort()
        finally:
            self._batching = False
            self._flush()

    def _resumeReading(self) -> None:
        if not self._readingPaused:
            return
        self._readingPaused = False
        if self.mapping is not None:
            self.mapping.resume_reading(self._now())
        resume = getattr(self.transport, "resumeProducing", None)
        if resume is not None and not self._stopped():
            resume()

    def _cancelAdmission(self) -> None:
        timer, self._admissionTimer = self._admissionTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _deliver(self, event: DataReceived) -> None:
        ppid = event.ppid
        if ppid == ASAP_PPID:
            self._deliverMessage(event, asap.decode, self.asapMessageReceived)
        elif ppid == ENRP_PPID:
            self._deliverMessage(event, enrp.decode, self.enrpMessageReceived)
        elif not self._lost:
            # _callHook inlined: this is the call every application message makes.
            try:
                self.applicationMessageReceived(ppid, event.user_data, event.unordered)
            except Exception:
                self._hookFailed(self.applicationMessageReceived)
        # Acknowledged with the others of this read when it ends (_flush).
        self._lastDelivered = event

    def _deliverMessage(self, event: DataReceived, decode: Any, hook: Any) -> None:
        ppid = event.ppid
        try:
            message: Message = decode(event.user_data, self.messageLimits)
        except MalformedMessage as error:
            if event.user_data[:1] == bytes([_ERROR_TYPES[ppid]]):
                # Never answer an error with an error: two peers could loop forever.
                error.report = False
            self._callHook(self.malformedMessageReceived, error, ppid)
            return
        is_error = isinstance(message, asap.ErrorMessage | enrp.ErrorMessage)
        if message.unrecognized_parameters and not is_error:
            self._reportUnrecognized(ppid, message.unrecognized_parameters)
        self._callHook(hook, message)

    def _reportUnrecognized(self, ppid: int, parameters: tuple[bytes, ...]) -> None:
        self.log.info(
            "{protocol} message from {peer} carries {count} unrecognized parameter(s); "
            "reporting them",
            protocol=_PROTOCOL_NAMES[ppid],
            peer=self.peer,
            ppid=ppid,
            count=len(parameters),
            cause="unrecognized parameter",
        )
        causes = tuple(ErrorCause(CauseCode.UNRECOGNIZED_PARAMETER, tlv) for tlv in parameters)
        self._callHook(self.sendOperationError, ppid, OperationError(causes))

    def _callHook(self, hook: Any, *args: Any) -> None:
        if self._lost:
            return
        try:
            hook(*args)
        except Exception:
            self._hookFailed(hook)

    def _hookFailed(self, hook: Any) -> None:
        """Log the exception a hook raised (called from the handler)."""
        self.log.failure(
            "{hook} raised on the connection with {peer}",
            hook=getattr(hook, "__name__", repr(hook)),
            peer=self.peer,
            cause="exception in hook",
        )

    def _mappingFailed(self, event: ProtocolError) -> None:
        self._callHook(self.malformedMessageReceived, event.error, None)
        self._close()

    def _heartbeatTimedOut(self, event: HeartbeatTimeout) -> None:
        self.log.warn(
            "Closing dead connection with {peer}: {cause}",
            peer=self.peer,
            cause=event.reason,
        )
        self._abort()

    def _armTimer(self) -> None:
        """Arm the timer for the mapping's next deadline (heartbeat) or the handshake
        deadline, whichever comes first. Cheap when the deadline only moved later, as it
        does with every read."""
        mapping = self.mapping
        deadline = None if mapping is None or self._stopped() else mapping.next_deadline()
        readyBy = self._readyBy
        if readyBy is not None and (deadline is None or readyBy < deadline):
            deadline = readyBy
        if deadline is None or self.clock is None:
            self._timer.cancel()
        else:
            self._timer.arm(self.clock, deadline)

    def _cancelReadyDeadline(self) -> None:
        self._readyBy = None

    def _readyDeadlinePassed(self) -> None:
        self._readyBy = None
        if self._ready or self._lost:
            return
        if not self._handshakeDone:
            cause = "TLS handshake not completed"
        else:
            cause = "no TCP-mapping INIT received"
        factory = getattr(self, "factory", None)
        if isinstance(factory, RSerPoolFactory):
            factory.handshakeTimedOut(self, cause)
        else:
            self.log.warn(
                "Closing connection from {peer}: not ready {timeout} s after it opened: {cause}",
                peer=self.peer,
                timeout=self.handshakeTimeout,
                cause=cause,
            )
        # Whether or not a close was under way: a stalled peer must not keep the socket.
        self._abort()

    def _timerFired(self, now: float) -> None:
        readyBy = self._readyBy
        if readyBy is not None and now >= readyBy:
            self._readyBy = None
            if not self._ready and not self._lost:
                self._readyDeadlinePassed()
                return
        mapping = self.mapping
        if mapping is None or self._stopped():
            self._armTimer()  # the handshake deadline, if it is still to come
            return
        self._batching = True
        try:
            self._handleEvents(mapping.handle_timer(now))
            self._armTimer()
        except Exception:
            self.log.failure(
                "Closing connection with {peer}: unexpected error", peer=self.peer, cause="bug"
            )
            self._abort()
        finally:
            self._batching = False
            self._flush()


#: The hooks :meth:`RSerPoolProtocol._handleEvents` skips while a class keeps them.
_DEFAULT_MESSAGES_ACKNOWLEDGED = RSerPoolProtocol.messagesAcknowledged
_DEFAULT_DATA_ACKNOWLEDGED = RSerPoolProtocol.dataAcknowledged
_ACK_HOOKS = frozenset({"messagesAcknowledged", "dataAcknowledged"})

_P = TypeVar("_P", bound=RSerPoolProtocol)


class RSerPoolFactory(Factory[_P], Generic[_P]):
    """Builds protocols (``protocol()``, usually an :class:`RSerPoolProtocol` subclass) with a
    shared clock, mapping config, message limits and handshake deadline, within a
    connection cap.

    ``None`` keeps the protocol's own setting (the global reactor if it has no clock).
    With a ``cap`` (:class:`~twisted_rserpool.transport.admission.ConnectionCap`, possibly
    shared with other factories), ``buildProtocol`` refuses (returns ``None``) while the
    cap is full. Connections that miss the handshake deadline are counted in
    :attr:`handshakeTimeouts` and logged (at most ten lines a second, then a count).
    """

    # No "Starting factory" / "Stopping factory" line for every outgoing connection.
    noisy = False

    def __init__(
        self,
        protocol: Callable[[], _P],
        clock: IReactorTime | None = None,
        *,
        mappingConfig: MappingConfig | None = None,
        messageLimits: Limits | None = None,
        handshakeTimeout: float | None = None,
        cap: ConnectionCap | None = None,
    ) -> None:
        self.protocol = protocol
        self.clock = clock
        self.mappingConfig = mappingConfig
        self.messageLimits = messageLimits
        self.handshakeTimeout = handshakeTimeout
        self.cap = cap
        self.handshakeTimeouts = 0
        self._timeoutLog = ThrottledLog(
            RSerPoolProtocol.log,
            clock,
            "Closed {count} more connection(s) in {interval} s that were not ready in time",
            burst=10,
        )

    def handshakeTimedOut(self, protocol: RSerPoolProtocol, cause: str) -> None:
        """``protocol``'s connection was not ready by its deadline (``cause`` says what was
        missing) and is being aborted: count and log it. Extend to count elsewhere too."""
        self.handshakeTimeouts += 1
        self._timeoutLog.warn(
            "Closing connection from {peer}: not ready {timeout} s after it opened: {cause}",
            peer=protocol.peer,
            timeout=protocol.handshakeTimeout,
            cause=cause,
        )

    def buildProtocol(self, addr: Any) -> _P | None:
        """A protocol with this factory's clock and limits; ``None`` if the cap is full."""
        assert self.protocol is not None
        cap = self.cap
        if cap is not None and not cap.admit(addr):
            return None
        protocol = self.protocol()
        if cap is not None:
            cap.add(protocol)
            protocol.admittedBy = cap
        protocol.factory = self
        if self.clock is not None:
            protocol.clock = self.clock
        if self.mappingConfig is not None:
            protocol.mappingConfig = self.mappingConfig
        if self.messageLimits is not None:
            protocol.messageLimits = self.messageLimits
        if self.handshakeTimeout is not None:
            protocol.handshakeTimeout = self.handshakeTimeout
        return protocol
