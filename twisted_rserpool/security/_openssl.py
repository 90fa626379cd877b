"""Typed access to the parts of OpenSSL that pyOpenSSL does not wrap (TLS-PSK and a few queries).

pyOpenSSL exposes no PSK API, but the cffi binding under it (``OpenSSL.SSL._lib`` and
``_ffi``) binds the PSK callbacks. Those objects are untyped; this module is the only
place where they are touched, so ``Any`` stays here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

_ffi: Any = SSL._ffi  # type: ignore[attr-defined]
_lib: Any = SSL._lib  # type: ignore[attr-defined]

#: ``X509_V_OK``: the certificate chain verified.
X509_V_OK = 0
#: ``SSL_OP_ALLOW_NO_DHE_KEX`` (``SSL_OP_BIT(10)`` in OpenSSL 3 and 4; the binding does not
#: name it): lets TLS 1.3 accept a PSK in ``psk_ke`` mode, without (EC)DHE.
OP_ALLOW_NO_DHE_KEX = 1 << 10

#: A server-side lookup: the identity the client sent (raw bytes) -> the key, or None.
ServerLookup = Callable[[int, bytes], bytes | None]
#: A client-side choice: the server's identity hint (raw bytes or None) -> (identity, key) or None.
ClientChoice = Callable[[int, bytes | None], tuple[bytes, bytes] | None]


class CallbackHandle:
    """Keeps an ``ffi.callback`` alive for as long as the context that uses it."""

    __slots__ = ("_callback",)

    def __init__(self, callback: object) -> None:
        self._callback = callback


def _keep(context: SSL.Context, callback: object) -> CallbackHandle:
    # OpenSSL holds only a C pointer to the callback, and a Connection references its
    # Context but not whoever made it: the Context itself must keep the callback alive,
    # or a connection that outlives its creator calls freed memory.
    kept: list[object] = context.__dict__.setdefault("_rserpoolCallbacks", [])
    kept.append(callback)
    return CallbackHandle(callback)


def pointerOf(connection: SSL.Connection) -> int:
    """The address of the ``SSL *`` behind ``connection`` (what the PSK callbacks receive)."""
    return int(_ffi.cast("uintptr_t", connection._ssl))


def _contextPointer(context: SSL.Context) -> Any:
    return context._context


def setPskServerCallback(
    context: SSL.Context, lookup: ServerLookup, onError: Callable[[], None]
) -> CallbackHandle:
    """Install a PSK server callback on ``context``; keep the returned handle alive.

    ``lookup(sslPointer, identity)`` returns the key for that identity or None. Whatever
    ``lookup`` raises is reported through ``onError`` and refuses the identity.
    """

    def callback(ssl: Any, identity: Any, psk: Any, maxPskLen: int) -> int:
        try:
            if identity == _ffi.NULL:
                return 0
            key = lookup(int(_ffi.cast("uintptr_t", ssl)), _ffi.string(identity))
            if key is None or not key or len(key) > maxPskLen:
                return 0
            _ffi.memmove(psk, key, len(key))
            return len(key)
        except BaseException:
            with contextlib.suppress(BaseException):
                onError()
            return 0

    handle = _ffi.callback(
        "unsigned int(SSL *, const char *, unsigned char *, unsigned int)", callback
    )
    _lib.SSL_CTX_set_psk_server_callback(_contextPointer(context), handle)
    return _keep(context, handle)


def setPskClientCallback(
    context: SSL.Context, choose: ClientChoice, onError: Callable[[], None]
) -> CallbackHandle:
    """Install a PSK client callback on ``context``; keep the returned handle alive.

    ``choose(sslPointer, hint)`` returns the identity and key to offer, or None to offer
    nothing. Whatever it raises is reported through ``onError`` and offers nothing.
    """

    def callback(
        ssl: Any, hint: Any, identity: Any, maxIdentityLen: int, psk: Any, maxPskLen: int
    ) -> int:
        try:
            hintBytes = None if hint == _ffi.NULL else _ffi.string(hint)
            chosen = choose(int(_ffi.cast("uintptr_t", ssl)), hintBytes)
            if chosen is None:
                return 0
            name, key = chosen
            if not key or len(key) > maxPskLen or len(name) > maxIdentityLen or b"\0" in name:
                return 0
            _ffi.memmove(identity, name + b"\0", len(name) + 1)
            _ffi.memmove(psk, key, len(key))
            return len(key)
        except BaseException:
            with contextlib.suppress(BaseException):
                onError()
            return 0

    handle = _ffi.callback(
        "unsigned int(SSL *, const char *, char *, unsigned int, unsigned char *, unsigned int)",
        callback,
    )
    _lib.SSL_CTX_set_psk_client_callback(_contextPointer(context), handle)
    return _keep(context, handle)


#: A check run when a server is about to send its certificate: the ``SSL *`` -> go on?
CertificateCheck = Callable[[int], bool]


def setCertificateCallback(
    context: SSL.Context, check: CertificateCheck, onError: Callable[[], None]
) -> CallbackHandle:
    """Install ``SSL_CTX_set_cert_cb`` on ``context``; keep the returned handle alive.

    OpenSSL calls it on a server when the handshake will authenticate by certificate (not
    for a TLS 1.3 handshake that uses a PSK), before the certificate is sent. ``check``
    returning false, or raising (reported through ``onError``), fails the handshake.
    """

    def callback(ssl: Any, argument: Any) -> int:
        try:
            return 1 if check(int(_ffi.cast("uintptr_t", ssl))) else 0
        except BaseException:
            with contextlib.suppress(BaseException):
                onError()
            return 0

    handle = _ffi.callback("int(SSL *, void *)", callback)
    _lib.SSL_CTX_set_cert_cb(_contextPointer(context), handle, _ffi.NULL)
    return _keep(context, handle)


def useIdentityHint(context: SSL.Context, hint: bytes) -> None:
    """Send ``hint`` as the PSK identity hint (TLS 1.2 only; TLS 1.3 has none)."""
    if not _lib.SSL_CTX_use_psk_identity_hint(_contextPointer(context), hint):
        raise ValueError("OpenSSL refused the PSK identity hint")


def setTls13Ciphersuites(context: SSL.Context, suites: str) -> None:
    """Restrict the TLS 1.3 cipher suites (colon separated OpenSSL names)."""
    context.set_tls13_ciphersuites(suites.encode("ascii"))


def pendingErrorReason() -> str | None:
    """The reason of the oldest error in this thread's OpenSSL error queue (left there)."""
    code = _lib.ERR_peek_error()
    if not code:
        return None
    reason = _lib.ERR_reason_error_string(code)
    return None if reason == _ffi.NULL else _ffi.string(reason).decode("ascii", "replace")


def pendingErrorIsUnexpectedEof() -> bool:
    """Whether the oldest error in this thread's OpenSSL error queue is the peer's TCP close
    without close_notify (``SSL_R_UNEXPECTED_EOF_WHILE_READING``; left in the queue)."""
    code = _lib.ERR_peek_error()
    return bool(code) and _lib.ERR_GET_REASON(code) == _lib.SSL_R_UNEXPECTED_EOF_WHILE_READING


def sessionReused(connection: SSL.Connection) -> bool:
    """Whether the handshake resumed a session; a TLS 1.3 PSK handshake counts as one."""
    return bool(_lib.SSL_session_reused(connection._ssl))


def verifyResult(connection: SSL.Connection) -> int:
    """OpenSSL's verdict on the peer's certificate chain (``X509_V_OK`` when it verified)."""
    return int(_lib.SSL_get_verify_result(connection._ssl))


def verifyMode(connection: SSL.Connection) -> int:
    """The verification flags (``SSL.VERIFY_*``) in force on ``connection``."""
    return int(_lib.SSL_get_verify_mode(connection._ssl))
