"""Secured RSerPool (ASAP, ENRP) server pools and an IKEv2 redirecting VPN gateway for Twisted."""

__version__ = "0.1.0"
