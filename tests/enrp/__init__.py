"""Tests of the ENRP server."""
