"""strongSwan's VICI protocol (the Versatile IKE Control Interface of charon), sans-IO.

The wire format (strongSwan's ``src/libcharon/plugins/vici/README.md``): each packet is a
segment with a 32-bit big-endian length (at most 512 KiB), a packet type octet, a name
(8-bit length, for the named types) and a message. A message is a sequence of elements:
sections (named, nested, balanced), key/values (named, 16-bit length values) and lists
(named, not nested, of unnamed items). Values are octet strings; charon sends text.

:class:`PacketDecoder` turns received bytes into :class:`Packet` values and raises
:class:`ViciError` on anything malformed; :func:`encodePacket` and :func:`encodeMessage`
write them. :class:`ViciSession` runs commands one at a time, as the protocol demands (no
sequence numbers), including the streamed ones (``list-sas`` streams ``list-sa`` events
between the event registration and the response).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypeAlias, Union

__all__ = [
    "MAX_SEGMENT",
    "CommandFailed",
    "CommandResult",
    "ElementType",
    "Message",
    "Packet",
    "PacketDecoder",
    "PacketType",
    "ViciError",
    "ViciSession",
    "decodeMessage",
    "encodeMessage",
    "encodePacket",
]

#: The largest segment charon accepts or sends (512 KiB of data).
MAX_SEGMENT = 512 * 1024
#: Sections nested deeper than this are refused (charon's messages nest a few levels).
MAX_DEPTH = 64

#: A message: names to values, which are octet strings, lists of them, or sections.
Message: TypeAlias = dict[str, Union[bytes, list[bytes], "Message"]]

_LENGTH = struct.Struct("!I")
_VALUE_LENGTH = struct.Struct("!H")


class ViciError(Exception):
    """Malformed VICI data, or a packet that does not fit the exchange."""


class PacketType(IntEnum):
    """The packet types of the VICI packet layer."""

    CMD_REQUEST = 0
    CMD_RESPONSE = 1
    CMD_UNKNOWN = 2
    EVENT_REGISTER = 3
    EVENT_UNREGISTER = 4
    EVENT_CONFIRM = 5
    EVENT_UNKNOWN = 6
    EVENT = 7


#: Packet types that carry a name after the type octet.
NAMED = frozenset(
    {
        PacketType.CMD_REQUEST,
        PacketType.EVENT_REGISTER,
        PacketType.EVENT_UNREGISTER,
        PacketType.EVENT,
    }
)
#: Packet types that carry a message (after the name, if any).
WITH_MESSAGE = frozenset({PacketType.CMD_REQUEST, PacketType.CMD_RESPONSE, PacketType.EVENT})


class ElementType(IntEnum):
    """The element types of a VICI message."""

    SECTION_START = 1
    SECTION_END = 2
    KEY_VALUE = 3
    LIST_START = 4
    LIST_ITEM = 5
    LIST_END = 6


@dataclass(frozen=True)
class Packet:
    """One VICI packet: its type, its name (named types only) and its message."""

    type: PacketType
    name: str | None = None
    message: Message = field(default_factory=dict)


# --------------------------------------------------------------------------- encoding


def _name(name: str) -> bytes:
    encoded = name.encode("utf-8")
    if len(encoded) > 0xFF:
        raise ValueError(f"VICI name {name[:20]!r}... is longer than 255 octets")
    return bytes([len(encoded)]) + encoded


def _value(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"VICI value of {len(value)} octets is longer than 65535")
    return _VALUE_LENGTH.pack(len(value)) + value


def encodeMessage(message: Message) -> bytes:
    """The elements of ``message``: octet strings (or ``str``, as UTF-8) as key/values,
    lists as lists, dictionaries as sections."""
    out = bytearray()
    for key, value in message.items():
        if isinstance(value, dict):
            out += bytes([ElementType.SECTION_START]) + _name(key)
            out += encodeMessage(value)
            out.append(ElementType.SECTION_END)
        elif isinstance(value, list):
            out += bytes([ElementType.LIST_START]) + _name(key)
            for item in value:
                out += bytes([ElementType.LIST_ITEM]) + _value(_octets(item))
            out.append(ElementType.LIST_END)
        else:
            out += bytes([ElementType.KEY_VALUE]) + _name(key) + _value(_octets(value))
    return bytes(out)


def _octets(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"a VICI value is bytes or str, not {type(value).__name__}")


def encodePacket(packet: Packet) -> bytes:
    """``packet`` as a segment, length first."""
    body = bytes([packet.type])
    if packet.type in NAMED:
        if packet.name is None:
            raise ValueError(f"a {packet.type.name} packet needs a name")
        body += _name(packet.name)
    if packet.type in WITH_MESSAGE:
        body += encodeMessage(packet.message)
    if len(body) > MAX_SEGMENT:
        raise ValueError(f"a VICI segment of {len(body)} octets is longer than {MAX_SEGMENT}")
    return _LENGTH.pack(len(body)) + body


# --------------------------------------------------------------------------- decoding


class _Reader:
    """Reads one packet's octets, every short read a :class:`ViciError`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.offset

    def octet(self, what: str) -> int:
        if self.left < 1:
            raise ViciError(f"truncated {what}")
        value = self.data[self.offset]
        self.offset += 1
        return value

    def take(self, count: int, what: str) -> bytes:
        if self.left < count:
            raise ViciError(f"truncated {what}: {count} octets announced, {self.left} left")
        value = self.data[self.offset : self.offset + count]
        self.offset += count
        return value

    def name(self, what: str) -> str:
        raw = self.take(self.octet(f"{what} length"), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ViciError(f"{what} {raw[:20]!r} is not UTF-8") from None

    def value(self, what: str) -> bytes:
        (length,) = _VALUE_LENGTH.unpack(self.take(2, f"{what} length"))
        return self.take(length, what)


def _decodeMessage(reader: _Reader) -> Message:
    root: Message = {}
    sections: list[Message] = [root]
    current: list[bytes] | None = None
    while reader.left:
        kind = reader.octet("element type")
        if current is not None and kind not in (ElementType.LIST_ITEM, ElementType.LIST_END):
            raise ViciError(f"element type {kind} inside a list")
        if kind == ElementType.SECTION_START:
            if len(sections) > MAX_DEPTH:
                raise ViciError(f"sections nested deeper than {MAX_DEPTH}")
            section: Message = {}
            sections[-1][reader.name("section name")] = section
            sections.append(section)
        elif kind == ElementType.SECTION_END:
            if len(sections) == 1:
                raise ViciError("section end without a section")
            sections.pop()
        elif kind == ElementType.KEY_VALUE:
            key = reader.name("key")
            sections[-1][key] = reader.value(f"value of {key!r}")
        elif kind == ElementType.LIST_START:
            current = []
            sections[-1][reader.name("list name")] = current
        elif kind == ElementType.LIST_ITEM:
            if current is None:
                raise ViciError("list item outside a list")
            current.append(reader.value("list item"))
        elif kind == ElementType.LIST_END:
            if current is None:
                raise ViciError("list end without a list")
            current = None
        else:
            raise ViciError(f"unknown element type {kind}")
    if current is not None:
        raise ViciError("list not closed")
    if len(sections) != 1:
        raise ViciError(f"{len(sections) - 1} sections not closed")
    return root


def decodeMessage(data: bytes) -> Message:
    """The message in ``data`` (a later duplicate key replaces the earlier one)."""
    return _decodeMessage(_Reader(data))


def _decodePacket(segment: bytes) -> Packet:
    reader = _Reader(segment)
    code = reader.octet("packet type")
    try:
        kind = PacketType(code)
    except ValueError:
        raise ViciError(f"unknown packet type {code}") from None
    name = reader.name("packet name") if kind in NAMED else None
    if kind in WITH_MESSAGE:
        return Packet(kind, name, _decodeMessage(reader))
    if reader.left:
        raise ViciError(f"{reader.left} octets after a {kind.name} packet")
    return Packet(kind, name)


class PacketDecoder:
    """Bytes in, packets out: :meth:`receive` buffers a partial segment."""

    def __init__(self, maxSegment: int = MAX_SEGMENT) -> None:
        self.maxSegment = maxSegment
        self._buffer = bytearray()

    def receive(self, data: bytes) -> list[Packet]:
        """The packets ``data`` completes; :class:`ViciError` on a malformed one (the
        stream cannot be resynchronised after it)."""
        self._buffer += data
        packets = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length == 0 or length > self.maxSegment:
                raise ViciError(f"segment length {length} is not 1 to {self.maxSegment}")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            segment = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            packets.append(_decodePacket(segment))
        return packets


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CommandResult:
    """A command's response, and the events it streamed (``list-sas``: one per IKE SA)."""

    command: str
    response: Message
    events: tuple[Message, ...] = ()


@dataclass(frozen=True)
class CommandFailed:
    """The daemon knows no such command (CMD_UNKNOWN) or no such event (EVENT_UNKNOWN)."""

    command: str
    reason: str


Outcome: TypeAlias = CommandResult | CommandFailed


@dataclass
class _Command:
    name: str
    message: Message
    stream: str | None
    #: What the daemon answers next: "register", "response" or "unregister".
    step: str = ""
    events: list[Message] = field(default_factory=list)
    response: Message | None = None
    failure: str | None = None


class ViciSession:
    """A client's side of one VICI connection: commands queued, run one at a time.

    :meth:`command` queues a command (``stream``: the event it streams, registered before
    and unregistered after it); :meth:`receiveData` takes the daemon's bytes and returns
    the outcomes they complete; :meth:`dataToSend` the bytes to write. A packet that does
    not fit the exchange raises :class:`ViciError`, as malformed data does.
    """

    def __init__(self) -> None:
        self._decoder = PacketDecoder()
        self._queue: deque[_Command] = deque()
        self._active: _Command | None = None
        self._out = bytearray()

    @property
    def busy(self) -> bool:
        """Whether a command is running or queued."""
        return self._active is not None or bool(self._queue)

    def command(self, name: str, message: Message | None = None, stream: str | None = None) -> None:
        """Queue command ``name`` with ``message``."""
        self._queue.append(_Command(name, dict(message or {}), stream))
        self._next()

    def dataToSend(self) -> bytes:
        """The bytes to write to the daemon now."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def receiveData(self, data: bytes) -> list[Outcome]:
        """The outcomes the daemon's ``data`` completes."""
        outcomes = []
        for packet in self._decoder.receive(data):
            outcome = self._packet(packet)
            if outcome is not None:
                outcomes.append(outcome)
                self._active = None
                self._next()
        return outcomes

    def _next(self) -> None:
        if self._active is not None or not self._queue:
            return
        command = self._active = self._queue.popleft()
        if command.stream is not None:
            command.step = "register"
            self._out += encodePacket(Packet(PacketType.EVENT_REGISTER, command.stream))
        else:
            self._request(command)

    def _request(self, command: _Command) -> None:
        command.step = "response"
        self._out += encodePacket(Packet(PacketType.CMD_REQUEST, command.name, command.message))

    def _packet(self, packet: Packet) -> Outcome | None:
        command = self._active
        if command is None:
            if packet.type is PacketType.EVENT:
                return None  # an event registered by nobody now: late, ignored
            raise ViciError(f"unexpected {packet.type.name} with no command running")
        if packet.type is PacketType.EVENT:
            if packet.name == command.stream and command.step == "response":
                command.events.append(packet.message)
            return None
        if command.step == "register":
            if packet.type is PacketType.EVENT_UNKNOWN:
                return CommandFailed(command.name, f"the daemon has no {command.stream!r} event")
            self._expect(packet, PacketType.EVENT_CONFIRM, command)
            self._request(command)
            return None
        if command.step == "response":
            if packet.type is PacketType.CMD_UNKNOWN:
                command.failure = f"the daemon has no {command.name!r} command"
            else:
                self._expect(packet, PacketType.CMD_RESPONSE, command)
                command.response = packet.message
            if command.stream is None:
                return self._outcome(command)
            command.step = "unregister"
            self._out += encodePacket(Packet(PacketType.EVENT_UNREGISTER, command.stream))
            return None
        # "unregister": the stream is over, confirmed or not.
        if packet.type is not PacketType.EVENT_UNKNOWN:
            self._expect(packet, PacketType.EVENT_CONFIRM, command)
        return self._outcome(command)

    @staticmethod
    def _outcome(command: _Command) -> Outcome:
        if command.failure is not None or command.response is None:
            return CommandFailed(command.name, command.failure or "no response")
        return CommandResult(command.name, command.response, tuple(command.events))

    @staticmethod
    def _expect(packet: Packet, wanted: PacketType, command: _Command) -> None:
        if packet.type is not wanted:
            raise ViciError(
                f"{packet.type.name} where {wanted.name} was due in command {command.name!r}"
            )
