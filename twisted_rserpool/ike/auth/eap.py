"""EAP (RFC 3748) and EAP-MSCHAPv2 for IKE_AUTH (RFC 7296 section 2.16), without I/O.

The gateway is the EAP authenticator: an ``IEapAuthenticator`` starts one ``IEapSession``
per client, which produces the EAP Requests and reads the client's Responses until it
ends with Success (and the MSK, the shared secret of the final AUTH payloads) or Failure.
``MsChapV2Authenticator`` is the default implementation: EAP-Identity, then MS-CHAP-V2
(RFC 2759) checked against a ``UsersFile`` (or any object with a ``password(name)``
method). Plug in RADIUS or another store by providing ``IEapAuthenticator``; a session's
``receive`` answers at once, or returns a ``PendingEapStep`` that an asynchronous back end
delivers when its answer arrives.

``MsChapV2Peer`` is the client side, for our own initiator.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from zope.interface import Interface, implementer

from twisted_rserpool.ike.auth import mschapv2
from twisted_rserpool.ike.config import Identity

__all__ = [
    "EAP_FAILURE",
    "EAP_REQUEST",
    "EAP_RESPONSE",
    "EAP_SUCCESS",
    "TYPE_IDENTITY",
    "TYPE_MSCHAPV2",
    "TYPE_NAK",
    "EapError",
    "EapMessage",
    "EapStep",
    "IEapAuthenticator",
    "IEapSession",
    "MsChapV2Authenticator",
    "MsChapV2Packet",
    "MsChapV2Peer",
    "MsChapV2Session",
    "PasswordLookup",
    "PendingEapStep",
    "UsersFile",
    "decode_eap",
    "decode_mschapv2",
]

# EAP Codes (RFC 3748 section 4) and Types (section 5, IANA).
EAP_REQUEST = 1
EAP_RESPONSE = 2
EAP_SUCCESS = 3
EAP_FAILURE = 4
TYPE_IDENTITY = 1
TYPE_NAK = 3
TYPE_MSCHAPV2 = 26

# MS-CHAPv2 OpCodes (RFC 2759 sections 3-5, as EAP carries them).
OP_CHALLENGE = 1
OP_RESPONSE = 2
OP_SUCCESS = 3
OP_FAILURE = 4


class EapError(ValueError):
    """An EAP or MS-CHAPv2 packet that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class EapMessage:
    """One EAP packet: Code, Identifier, and (Request/Response) Type and Type-Data."""

    code: int
    identifier: int
    type: int | None = None
    data: bytes = b""

    def encode(self) -> bytes:
        """The packet's octets."""
        if self.code in (EAP_SUCCESS, EAP_FAILURE):
            return struct.pack("!BBH", self.code, self.identifier, 4)
        assert self.type is not None
        return (
            struct.pack("!BBHB", self.code, self.identifier, 5 + len(self.data), self.type)
            + self.data
        )


def decode_eap(data: bytes) -> EapMessage:
    """Decode one EAP packet (RFC 3748 section 4); raises EapError."""
    if len(data) < 4:
        raise EapError("truncated EAP packet")
    code, identifier, length = struct.unpack_from("!BBH", data)
    if length != len(data):
        raise EapError(f"EAP Length {length} but {len(data)} octets")
    if code in (EAP_SUCCESS, EAP_FAILURE):
        if length != 4:
            raise EapError("EAP Success/Failure with data")
        return EapMessage(code, identifier)
    if code not in (EAP_REQUEST, EAP_RESPONSE):
        raise EapError(f"unknown EAP Code {code}")
    if length < 5:
        raise EapError("EAP Request/Response without a Type")
    return EapMessage(code, identifier, data[4], data[5:])


@dataclass(frozen=True, slots=True)
class MsChapV2Packet:
    """The Type-Data of an EAP-MSCHAPv2 packet: OpCode, MS-CHAPv2-ID, value and name/message."""

    opcode: int
    identifier: int
    value: bytes = b""
    """Challenge (16 octets) or Response (49 octets); empty for Success and Failure."""
    name: bytes = b""
    """The Name of a Challenge/Response, or the Message of a Success/Failure Request."""

    def encode(self, *, short: bool = False) -> bytes:
        """The octets (``short``: the one-octet Success/Failure Response of the peer)."""
        if short:
            return bytes((self.opcode,))
        if self.opcode in (OP_CHALLENGE, OP_RESPONSE):
            body = bytes((len(self.value),)) + self.value + self.name
        else:
            body = self.name
        return struct.pack("!BBH", self.opcode, self.identifier, 4 + len(body)) + body


def decode_mschapv2(data: bytes) -> MsChapV2Packet:
    """Decode EAP-MSCHAPv2 Type-Data; raises EapError."""
    if not data:
        raise EapError("empty EAP-MSCHAPv2 data")
    opcode = data[0]
    if len(data) == 1 and opcode in (OP_SUCCESS, OP_FAILURE):
        return MsChapV2Packet(opcode, 0)
    if len(data) < 4:
        raise EapError("truncated EAP-MSCHAPv2 packet")
    _, identifier, length = struct.unpack_from("!BBH", data)
    if length != len(data):
        raise EapError(f"MS-Length {length} but {len(data)} octets")
    if opcode in (OP_CHALLENGE, OP_RESPONSE):
        if len(data) < 5:
            raise EapError("EAP-MSCHAPv2 packet without a Value-Size")
        size = data[4]
        wanted = 16 if opcode == OP_CHALLENGE else 49
        if size != wanted or len(data) < 5 + size:
            raise EapError(f"EAP-MSCHAPv2 Value-Size {size}, expected {wanted}")
        return MsChapV2Packet(opcode, identifier, data[5 : 5 + size], data[5 + size :])
    if opcode in (OP_SUCCESS, OP_FAILURE):
        return MsChapV2Packet(opcode, identifier, b"", data[4:])
    raise EapError(f"unknown EAP-MSCHAPv2 OpCode {opcode}")


@dataclass(frozen=True)
class EapStep:
    """What an EAP session says after a packet: the next packet and, at the end, the outcome.

    ``outcome`` is None while the conversation goes on, ``"success"`` (with ``msk``) or
    ``"failure"`` (with ``reason``) at its end; ``message`` is then EAP Success or Failure
    (authenticator), or the last Response (peer; None when nothing is to be sent).
    """

    message: bytes | None
    outcome: str | None = None
    msk: bytes | None = None
    identity: bytes = b""
    reason: str = ""


class PendingEapStep:
    """An ``EapStep`` an asynchronous back end (a RADIUS round trip) delivers later.

    The session returns it from ``receive`` and calls ``deliver`` once, when the answer is
    known; the IKE SA answers the client's request then (its retransmissions meanwhile are
    not processed again). A step delivered after the SA ended is ignored.
    """

    def __init__(self) -> None:
        self.step: EapStep | None = None
        self._callbacks: list[Callable[[EapStep], None]] = []

    def deliver(self, step: EapStep) -> None:
        """The back end's answer."""
        if self.step is not None:
            raise ValueError("an EAP step is delivered once")
        self.step = step
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(step)

    def then(self, callback: Callable[[EapStep], None]) -> None:
        """Call ``callback`` with the step (at once if it was delivered already)."""
        if self.step is not None:
            callback(self.step)
        else:
            self._callbacks.append(callback)


class IEapSession(Interface):
    """The EAP conversation with one client (authenticator side)."""

    def begin() -> bytes:
        """The first EAP Request."""

    def receive(response: bytes) -> EapStep | PendingEapStep:  # noqa: N805 (zope Interface)
        """The client's EAP Response: the next Request, or Success/Failure and the outcome
        (or a ``PendingEapStep`` that delivers them later)."""


class IEapAuthenticator(Interface):
    """Checks clients' credentials with EAP (the users file, RADIUS, your own store)."""

    def start(peer: Identity) -> IEapSession:  # noqa: N805 (zope Interface)
        """A new EAP session for the client that sent IDi ``peer``."""


class PasswordLookup(Protocol):
    """Where an MS-CHAPv2 authenticator finds a user's password."""

    def password(self, name: bytes) -> str | None:
        """The password of EAP identity ``name``, or None."""


@dataclass(frozen=True)
class UsersFile:
    """EAP users and passwords, in strongSwan's ipsec.secrets form.

    One ``name : EAP "password"`` per line (the quotes may be left out when the password
    has no blanks; ``#`` starts a comment line).
    """

    users: dict[bytes, str]

    def password(self, name: bytes) -> str | None:
        """The password of ``name``, or None."""
        return self.users.get(name)

    @classmethod
    def parse(cls, text: str) -> UsersFile:
        """Parse the file's text; raises ValueError naming the line."""
        users: dict[bytes, str] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            kind, _, secret = rest.strip().partition(" ")
            if not sep or not name.strip() or kind.upper() != "EAP":
                raise ValueError(f"line {number}: expected 'name : EAP \"password\"'")
            secret = secret.strip()
            if len(secret) >= 2 and secret[0] == secret[-1] == '"':
                secret = secret[1:-1]
            if not secret:
                raise ValueError(f"line {number}: empty password")
            users[name.strip().strip('"').encode("utf-8")] = secret
        return cls(users)


@implementer(IEapAuthenticator)
class MsChapV2Authenticator:
    """EAP-Identity then EAP-MSCHAPv2 against a password store (the default authenticator)."""

    def __init__(
        self,
        users: PasswordLookup,
        *,
        server_name: bytes = b"vpngw",
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.users = users
        self.server_name = server_name
        self.random = random

    def start(self, peer: Identity) -> MsChapV2Session:
        """A new session for the client ``peer``."""
        return MsChapV2Session(self)


@implementer(IEapSession)
class MsChapV2Session:
    """One client's EAP-Identity and EAP-MSCHAPv2 conversation (authenticator side)."""

    def __init__(self, authenticator: MsChapV2Authenticator) -> None:
        self.authenticator = authenticator
        self.identifier = authenticator.random(1)[0]
        self.state = "identity"
        self.identity = b""
        self.challenge = b""
        self.msk = b""

    @property
    def user(self) -> str:
        """The EAP identity as text for log lines (undecodable bytes escaped)."""
        return self.identity.decode("utf-8", "backslashreplace")

    def _request(self, eap_type: int, data: bytes) -> bytes:
        self.identifier = (self.identifier + 1) % 256
        return EapMessage(EAP_REQUEST, self.identifier, eap_type, data).encode()

    def _end(self, success: bool, reason: str = "") -> EapStep:
        self.state = "done"
        code = EAP_SUCCESS if success else EAP_FAILURE
        return EapStep(
            EapMessage(code, self.identifier).encode(),
            "success" if success else "failure",
            self.msk if success else None,
            self.identity,
            reason,
        )

    def begin(self) -> bytes:
        return self._request(TYPE_IDENTITY, b"")

    def receive(self, response: bytes) -> EapStep:
        try:
            message = decode_eap(response)
        except EapError as e:
            return self._end(False, str(e))
        if message.code != EAP_RESPONSE or message.identifier != self.identifier:
            return self._end(False, "EAP packet is not the Response to our Request")
        if self.state == "identity":
            if message.type != TYPE_IDENTITY or not message.data:
                return self._end(False, "no EAP identity")
            self.identity = message.data
            self.challenge = self.authenticator.random(16)
            self.state = "challenge"
            packet = MsChapV2Packet(
                OP_CHALLENGE,
                (self.identifier + 1) & 0xFF,
                self.challenge,
                self.authenticator.server_name,
            )
            return EapStep(self._request(TYPE_MSCHAPV2, packet.encode()))
        if message.type != TYPE_MSCHAPV2:
            return self._end(False, f"client refused EAP-MSCHAPv2 (EAP type {message.type})")
        try:
            packet = decode_mschapv2(message.data)
        except EapError as e:
            return self._end(False, str(e))
        if self.state == "challenge":
            return self._check(packet)
        if self.state == "success" and packet.opcode == OP_SUCCESS:
            return self._end(True)
        return self._end(False, f"unexpected EAP-MSCHAPv2 OpCode {packet.opcode}")

    def _check(self, packet: MsChapV2Packet) -> EapStep:
        if packet.opcode != OP_RESPONSE:
            return self._end(False, "EAP-MSCHAPv2 Response expected")
        password = self.authenticator.users.password(self.identity)
        if password is None:
            return self._end(False, f"unknown EAP user {self.user!r}")
        peer_challenge, nt_response = packet.value[:16], packet.value[24:48]
        # The user name hashed is the Name without a Windows domain (RFC 2759 section 4).
        username = packet.name.rpartition(b"\\")[2]
        password_hash = mschapv2.nt_password_hash(password)
        expected = mschapv2.nt_response_from_hash(
            self.challenge, peer_challenge, username, password_hash
        )
        if not hmac.compare_digest(expected, nt_response):
            return self._end(False, f"wrong password for EAP user {self.user!r}")
        self.msk = mschapv2.msk(password_hash, nt_response)
        self.state = "success"
        answer = mschapv2.authenticator_response(
            password_hash, nt_response, peer_challenge, self.challenge, username
        )
        success = MsChapV2Packet(OP_SUCCESS, packet.identifier, b"", answer + b" M=welcome")
        return EapStep(self._request(TYPE_MSCHAPV2, success.encode()))


class MsChapV2Peer:
    """The client side of EAP-Identity and EAP-MSCHAPv2 (for our initiator)."""

    def __init__(
        self, username: bytes, password: str, random: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.username = username
        self.password = password
        self.random = random
        self.expected = b""
        self.msk: bytes | None = None
        self.verified = False

    def receive(self, request: bytes) -> EapStep:
        """The authenticator's EAP packet: our Response, or the outcome."""
        try:
            message = decode_eap(request)
        except EapError as e:
            return EapStep(None, "failure", reason=str(e))
        if message.code == EAP_SUCCESS:
            if not self.verified or self.msk is None:
                return EapStep(None, "failure", reason="EAP Success before MS-CHAPv2 success")
            return EapStep(None, "success", self.msk, self.username)
        if message.code != EAP_REQUEST:
            return EapStep(None, "failure", reason="EAP Failure")
        if message.type == TYPE_IDENTITY:
            reply = EapMessage(EAP_RESPONSE, message.identifier, TYPE_IDENTITY, self.username)
            return EapStep(reply.encode())
        if message.type != TYPE_MSCHAPV2:
            nak = EapMessage(EAP_RESPONSE, message.identifier, TYPE_NAK, bytes((TYPE_MSCHAPV2,)))
            return EapStep(nak.encode())
        try:
            packet = decode_mschapv2(message.data)
        except EapError as e:
            return EapStep(None, "failure", reason=str(e))
        if packet.opcode == OP_CHALLENGE and self.msk is None:
            peer_challenge = self.random(16)
            nt_response = mschapv2.generate_nt_response(
                packet.value, peer_challenge, self.username, self.password
            )
            password_hash = mschapv2.nt_password_hash(self.password)
            self.expected = mschapv2.authenticator_response(
                password_hash, nt_response, peer_challenge, packet.value, self.username
            )
            self.msk = mschapv2.msk(password_hash, nt_response)
            value = peer_challenge + bytes(8) + nt_response + b"\x00"
            answer = MsChapV2Packet(OP_RESPONSE, packet.identifier, value, self.username)
            return EapStep(
                EapMessage(
                    EAP_RESPONSE, message.identifier, TYPE_MSCHAPV2, answer.encode()
                ).encode()
            )
        if packet.opcode == OP_SUCCESS and self.msk is not None:
            if not mschapv2.check_authenticator_response(self.expected, packet.name):
                return EapStep(None, "failure", reason="the authenticator's response is wrong")
            self.verified = True
            reply = EapMessage(
                EAP_RESPONSE,
                message.identifier,
                TYPE_MSCHAPV2,
                MsChapV2Packet(OP_SUCCESS, 0).encode(short=True),
            )
            return EapStep(reply.encode())
        return EapStep(None, "failure", reason=f"EAP-MSCHAPv2 OpCode {packet.opcode}")
