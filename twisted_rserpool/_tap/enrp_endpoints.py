"""The endpoint strings ``twistd enrp`` writes itself.

Its default listeners (ASAP on 127.0.0.1:3864, ENRP on 127.0.0.1:9902 when only ``--peer``
is given), the lines that tell operators how pool elements and pool users reach the default
ASAP listener, and the client endpoints to the pool elements it takes over and to the peers
that other peers name. ``--allow-plain-psk`` reaches all of them.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python import usage

__all__ = [
    "DEFAULT_ENRP_PORT",
    "DEFAULT_PE_IDENTITY",
    "DEFAULT_PORT",
    "defaultAsapListener",
    "escape",
    "listenerOption",
    "localListener",
    "outgoingEndpoints",
]

log = Logger(namespace="twisted_rserpool._tap.enrp")  # the command's namespace

DEFAULT_PORT = 3864  # ASAP over TLS (IANA)
DEFAULT_ENRP_PORT = 9902  # ENRP over TLS (IANA)
#: The pool element identity of the PSK file made for the default ASAP listener.
DEFAULT_PE_IDENTITY = "pe"


def escape(value: str) -> str:
    """``value`` (a path, an identity) as an endpoint string value."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _tlspsk(head: str, options: usage.Options, **values: str) -> str:
    """A ``tlspsk:`` string: ``head``, then ``values`` escaped, in order, then
    ``allowPlainPsk=yes`` if ``options`` allow plain PSK suites."""
    fields = "".join(f":{name}={escape(value)}" for name, value in values.items())
    plain = ":allowPlainPsk=yes" if options["allow-plain-psk"] else ""
    return head + fields + plain


def localListener(port: int, options: usage.Options, **files: str) -> str:
    """A ``tlspsk:`` listener on 127.0.0.1 ``port`` with ``files`` (``pskFile=...``)."""
    return _tlspsk(f"tlspsk:{port}:interface=127.0.0.1", options, **files)


def defaultAsapListener(
    options: usage.Options, pskFile: str, certificate: str, privateKey: str
) -> str:
    """The ASAP listener used when no ``--asap`` is given; logs how to connect to it."""
    description = localListener(
        DEFAULT_PORT, options, pskFile=pskFile, certificate=certificate, privateKey=privateKey
    )
    log.info(
        "A pool element connects with: tlspsk:host=127.0.0.1:port={port}:identity="
        "{identity}:pskFile={psk}",
        port=DEFAULT_PORT,
        identity=DEFAULT_PE_IDENTITY,
        psk=pskFile,
    )
    log.info(
        "A pool user connects with: tlspsk:host=127.0.0.1:port={port}:caCertificate={certificate}",
        port=DEFAULT_PORT,
        certificate=certificate,
    )
    return description


def listenerOption(options: usage.Options, name: str) -> str:
    """The option(s) a listener comes from: --NAME, or the files of the default one."""
    if options[name]:
        return f"--{name}"
    if name == "asap":
        return "--psk-file/--certificate"
    return "--enrp-psk-file/--psk-file"


def outgoingEndpoints(
    reactor: object, options: usage.Options, pskFile: str | None
) -> Callable[[str, int], IStreamClientEndpoint]:
    """Client endpoints to PEs we take over and to peers named by peers (TLS-PSK as us)."""

    def build(host: str, port: int) -> IStreamClientEndpoint:
        if options["insecure"] and pskFile is None:
            return clientFromString(reactor, f"tcp:host={host}:port={port}")  # type: ignore[no-untyped-call,no-any-return]
        return clientFromString(  # type: ignore[no-untyped-call,no-any-return]
            reactor,
            _tlspsk(
                f"tlspsk:host={host}:port={port}",
                options,
                identity=options["enrp-identity"],
                pskFile=pskFile or "",
            ),
        )

    return build
