"""A small HTTP client for the admin interfaces of ``twistd enrp`` and ``twistd vpngw``.

It speaks to the JSON API of :mod:`twisted_rserpool._admin` with the standard library
(``http.client``): a command-line program needs no reactor. Every failure, whether a
connection refused, an HTTP error status, or an answer that is not a JSON object, raises
:class:`AdminError` with one line that says what happened and what to try.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted_rserpool._admin import _splitEndpoint

#: The environment variable that may hold the admin token itself.
TOKEN_VARIABLE = "RSERPOOL_ADMIN_TOKEN"
#: The token file's name in a server's state directory (``twistd ... --state-dir``).
TOKEN_FILE = "admin.token"


class AdminError(Exception):
    """A request to an admin interface failed (the message is one line for the operator)."""


@dataclass(frozen=True)
class Server:
    """What the CLI knows about one kind of server: its name and where it usually is."""

    #: The ``twistd`` command (``enrp``, ``vpngw``).
    command: str
    #: The admin port the documentation uses (``--admin tcp:PORT``).
    defaultPort: int
    #: The default ``--state-dir`` (relative to the server's working directory).
    stateDirectory: str

    @property
    def defaultAddress(self) -> str:
        """The admin URL used when ``--admin`` is not given."""
        return f"http://127.0.0.1:{self.defaultPort}"


ENRP = Server("enrp", 8864, "enrp-state")
VPNGW = Server("vpngw", 8500, "vpngw-state")


@dataclass(frozen=True)
class AdminAddress:
    """Where an admin interface listens: a base URL, or a UNIX socket path."""

    #: ``http`` or ``https`` (``http`` for a UNIX socket).
    scheme: str
    #: Host name or address, without brackets (the socket path for ``unix``).
    host: str
    port: int | None
    #: A path prefix in front of the routes (usually empty).
    prefix: str = ""
    unixSocket: str | None = None

    def url(self, path: str) -> str:
        """How to name ``path`` of this interface in a message."""
        if self.unixSocket is not None:
            return f"unix:{self.unixSocket}{self.prefix}{path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.prefix}{path}"


def _endpointFields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """The type, positional fields and keyword fields of a Twisted endpoint string."""
    fields = [f.replace("\\", "") for f in _splitEndpoint(description)]
    positional = [f for f in fields[1:] if "=" not in f]
    keywords = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    return fields[0].lower(), positional, keywords


def parseAdminAddress(text: str) -> AdminAddress:
    """Read ``--admin``: a URL, ``HOST:PORT``, a port, or the server's endpoint string.

    ``http://127.0.0.1:8864``, ``127.0.0.1:8864``, ``[::1]:8864``, ``8864``,
    ``tcp:8864`` (loopback, as ``twistd ... --admin tcp:8864`` binds it),
    ``tcp:port=8864:interface=127.0.0.2``, ``tcp6:8864`` and ``unix:/run/enrp-admin.sock``
    are accepted. Raises :class:`ValueError` for anything else.
    """
    text = text.strip()
    if text.isdigit():
        text = f"tcp:{text}"
    kind = text.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6", "unix"):
        kind, positional, keywords = _endpointFields(text)
        if kind == "unix":
            path = keywords.get("address", positional[0] if positional else "")
            if not path:
                raise ValueError(f"{text!r} names no socket path")
            return AdminAddress("http", "localhost", None, unixSocket=path)
        portText = keywords.get("port", positional[0] if positional else "")
        host = keywords.get("interface", "::1" if kind == "tcp6" else "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):
            host = "::1" if kind == "tcp6" else "127.0.0.1"  # a wildcard listener answers here
        return AdminAddress("http", host, _port(portText, text))
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has no valid port") from None
    return AdminAddress(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{where!r} has no valid port")
    return int(text)


def findToken(tokenFile: str | None, server: Server) -> str | None:
    """The bearer token to send, or ``None``.

    In order: the file named by ``--token-file``, the ``RSERPOOL_ADMIN_TOKEN`` variable,
    and the server's default token file (``enrp-state/admin.token``) in the current
    directory if it exists. Raises :class:`AdminError` if a named file cannot be read.
    """
    if tokenFile is not None:
        return _readToken(Path(tokenFile), "--token-file")
    fromEnvironment = os.environ.get(TOKEN_VARIABLE, "").strip()
    if fromEnvironment:
        return fromEnvironment
    default = Path(server.stateDirectory) / TOKEN_FILE
    if default.is_file() and os.access(default, os.R_OK):
        return _readToken(default, "the default token file")
    return None


def _readToken(path: Path, what: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise AdminError(f"{what}: cannot read {path}: {reason}") from None
    if not token:
        raise AdminError(f"{what}: {path} is empty")
    return token


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a UNIX stream socket (``twistd ... --admin unix:PATH``)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socketPath = path

    def connect(self) -> None:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(self.timeout)
        try:
            connection.connect(self.socketPath)
        except OSError:
            connection.close()
            raise
        self.sock = connection


@dataclass
class AdminClient:
    """Requests to one admin interface; answers are JSON objects."""

    address: AdminAddress
    server: Server
    token: str | None = None
    timeout: float = 10.0

    def get(self, path: str) -> dict[str, Any]:
        """``GET path``: the JSON object it answers."""
        return self._request("GET", path, None)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST path`` with the JSON object ``body``: the JSON object it answers."""
        return self._request("POST", path, body)

    def _connection(self) -> http.client.HTTPConnection:
        address = self.address
        if address.unixSocket is not None:
            return _UnixConnection(address.unixSocket, self.timeout)
        if address.scheme == "https":
            return http.client.HTTPSConnection(address.host, address.port, timeout=self.timeout)
        return http.client.HTTPConnection(address.host, address.port, timeout=self.timeout)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.address.url(path)
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        try:
            connection.request(method, self.address.prefix + path, data, headers)
            response = connection.getresponse()
            content = response.read()
        except OSError as e:
            raise AdminError(self._unreachable(url, e)) from None
        except http.client.HTTPException as e:
            raise AdminError(f"{url}: the answer is not HTTP ({e or type(e).__name__})") from None
        finally:
            connection.close()
        document = self._decode(content)
        if response.status >= 400:
            raise AdminError(self._refused(url, response.status, response.reason, document))
        if document is None:
            raise AdminError(f"{url}: the answer is not a JSON object")
        return document

    @staticmethod
    def _decode(content: bytes) -> dict[str, Any] | None:
        try:
            document = json.loads(content)
        except (ValueError, RecursionError):  # not JSON (or nested beyond any document)
            return None
        return document if isinstance(document, dict) else None

    def _unreachable(self, url: str, error: OSError) -> str:
        reason = error.strerror or str(error) or type(error).__name__
        if isinstance(error, TimeoutError):
            reason = f"no answer within {self.timeout:g} s"
        hint = ""
        if isinstance(error, ConnectionRefusedError | FileNotFoundError):
            hint = (
                f" (is twistd {self.server.command} running with --admin"
                f" tcp:{self.server.defaultPort}? rserpool --admin names another address)"
            )
        return f"cannot reach the {self.server.command} admin interface at {url}: {reason}{hint}"

    def _refused(self, url: str, status: int, reason: str, document: dict[str, Any] | None) -> str:
        message = document.get("error") if document is not None else None
        said = f": {message}" if isinstance(message, str) and message else ""
        if status == 401:
            if self.token is None:
                return (
                    f"{url}: 401 {reason}{said}; give --token-file (the server's"
                    f" <state-dir>/{TOKEN_FILE}) or {TOKEN_VARIABLE}"
                )
            return f"{url}: 401 {reason}: the admin token was refused (is it this server's?)"
        if status == 404:
            return (
                f"{url}: 404 {reason}{said} (is this the admin interface of"
                f" twistd {self.server.command}?)"
            )
        return f"{url}: {status} {reason}{said}"


__all__ = [
    "ENRP",
    "TOKEN_FILE",
    "TOKEN_VARIABLE",
    "VPNGW",
    "AdminAddress",
    "AdminClient",
    "AdminError",
    "Server",
    "findToken",
    "parseAdminAddress",
]
