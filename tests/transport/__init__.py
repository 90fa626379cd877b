"""Tests of the TCP mapping transport: sans-IO connection, Twisted protocol, loopback."""
