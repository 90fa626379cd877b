"""Idle TLS connections give their record buffers back (SSL_MODE_RELEASE_BUFFERS): an ENRP
server holds thousands of PE connections that carry a keep-alive every few seconds."""

from __future__ import annotations

from OpenSSL import SSL

from twisted_rserpool.security.tls import PskClientCreator, pskServerCreator


def test_every_context_releases_idle_buffers() -> None:
    """Server and client contexts have the mode set, beside pyOpenSSL's own modes."""
    key = bytes(range(32))
    for creator in (pskServerCreator({"pe": key}), PskClientCreator("pe", key)):
        mode = creator._context.set_mode(0)  # adds nothing, returns the mode in force
        assert mode & SSL.MODE_RELEASE_BUFFERS
        assert mode & 0x2  # SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, pyOpenSSL's own, kept
