"""Tests of RSerPool security: PSK files, TLS-PSK and certificate handshakes, tampering."""
