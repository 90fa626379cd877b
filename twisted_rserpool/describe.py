"""Short text for what an operator reads: log fields, reprs, status pages.

Pool handles are bytes on the wire; :func:`handleText` shows them as the text they
usually are. :func:`endpointText` names any stream endpoint by its address, including
Twisted's own endpoints, whose default repr is only a memory address.
"""

from __future__ import annotations

from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType

__all__ = ["endpointAddress", "endpointText", "handleText", "hostPort", "objectText"]


def handleText(handle: bytes) -> str:
    """A pool handle as text: itself when printable ASCII, else ``0x`` and its hex."""
    if handle and all(0x20 <= b < 0x7F for b in handle):
        return handle.decode("ascii")
    return "0x" + handle.hex()


def hostPort(host: str, port: int) -> str:
    """``host:port``, the host in brackets if it is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpointAddress(endpoint: object) -> tuple[str, int] | None:
    """The host (or interface) and port a TCP-like endpoint connects to or listens on,
    read from the attributes Twisted's endpoints keep them in; ``None`` if it has none."""
    host = (
        getattr(endpoint, "_hostText", None)
        or getattr(endpoint, "_host", None)
        or getattr(endpoint, "_interface", None)
    )
    port = getattr(endpoint, "_port", None)
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    return (host if isinstance(host, str) else "", port)


def _ownRepr(thing: object) -> str | None:
    return repr(thing) if type(thing).__repr__ is not object.__repr__ else None


def objectText(thing: object) -> str:
    """``thing``'s own repr if its class has one, else its class name (not its address); a
    function as its qualified name, a bound method as its object's text and its name
    (``<PoolElement echo/0x00000017 registered>._timerFired``)."""
    if isinstance(thing, FunctionType | BuiltinFunctionType | MethodType):
        owner = getattr(thing, "__self__", None)
        if owner is not None and not isinstance(owner, ModuleType):
            return f"{objectText(owner)}.{thing.__name__}"
        return thing.__qualname__
    return _ownRepr(thing) or type(thing).__name__


def endpointText(endpoint: object) -> str:
    """An endpoint in a few words: its own repr if its class has one, else its class name
    and address (``TCP4ClientEndpoint(127.0.0.1:3863)``), never a memory address."""
    own = _ownRepr(endpoint)
    if own is not None:
        return own
    name = type(endpoint).__name__
    address = endpointAddress(endpoint)
    if address is not None:
        host, port = address
        return f"{name}({hostPort(host, port) if host else f'port {port}'})"
    path = getattr(endpoint, "_path", None) or getattr(endpoint, "_address", None)
    if isinstance(path, str):
        return f"{name}({path})"
    wrapped = getattr(endpoint, "_wrappedEndpoint", None)
    if wrapped is not None:
        return f"{name}({endpointText(wrapped)})"
    return name
