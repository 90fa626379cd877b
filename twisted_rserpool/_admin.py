"""What every admin interface of this package shares: safe defaults for an HTTP admin API.

- :func:`adminEndpoint`: an admin endpoint string bound to loopback unless it names an
  interface, and whether it is reachable only from this host.
- :func:`loadOrCreateToken`: the bearer token, generated once into a 0600 file.
- :class:`AdminResource`: a twisted.web resource with a fixed route table; ``GET`` and
  ``HEAD`` open on loopback, everything else (and everything off loopback) needs
  ``Authorization: Bearer <token>``; ``POST`` bodies must be JSON objects
  (``Content-Type: application/json``, which a web page cannot send cross-origin without
  a CORS preflight that this resource never answers); unknown paths are 404; on loopback
  the ``Host`` header must name a loopback address (no DNS rebinding; a UNIX socket, which
  no web page reaches, is exempt).
- :func:`isoTime` and :func:`checksumText`: the one format for times and checksums;
  :func:`runningFields`: version, start time and uptime for a status document.
- :func:`metricsReply`: a Prometheus scrape of a registry, in the format the scraper asks.
- :func:`htmlTable`, :func:`htmlFacts`, :func:`htmlPage`: the plain HTML (no scripts,
  everything escaped) of the status pages.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from twisted.internet.address import UNIXAddress
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from twisted_rserpool import __version__

log = Logger()

#: Endpoint types that listen on an IP interface (``interface=`` chooses it).
_IP_TYPES = {"tcp": "127.0.0.1", "tcp6": "::1", "ssl": "127.0.0.1", "tlspsk": "127.0.0.1"}
#: Endpoint types reachable only from this host (file permissions guard them).
_LOCAL_TYPES = ("unix",)


class AdminConfigError(ValueError):
    """An admin endpoint or token file that cannot be used (the message names the problem)."""


def _splitEndpoint(description: str) -> list[str]:
    """The fields of an endpoint string, split on unescaped colons (escapes kept)."""
    fields, current, escaped = [], "", False
    for character in description:
        if escaped:
            current += character
            escaped = False
        elif character == "\\":
            current += character
            escaped = True
        elif character == ":":
            fields.append(current)
            current = ""
        else:
            current += character
    fields.append(current)
    return fields


@dataclass(frozen=True)
class AdminEndpoint:
    """An admin listener: the endpoint string to listen on and who can reach it."""

    #: The server endpoint string (``interface=`` added when it had none).
    description: str
    #: Whether only this host can connect (a loopback interface or a UNIX socket).
    loopback: bool
    #: The interface it binds, or the socket path (for messages).
    where: str


def adminEndpoint(description: str) -> AdminEndpoint:
    """Bind ``description`` to loopback unless it names an interface, and say if it is local.

    ``tcp:8864`` becomes ``tcp:8864:interface=127.0.0.1`` (``tcp6``: ``::1``); an explicit
    ``interface=`` is kept, and is loopback only if it is a loopback address.
    """
    fields = _splitEndpoint(description.strip())
    kind = fields[0].lower()
    if kind in _LOCAL_TYPES:
        return AdminEndpoint(description, True, fields[1] if len(fields) > 1 else "")
    if kind not in _IP_TYPES:
        return AdminEndpoint(description, False, kind)
    interface = next(
        (f.split("=", 1)[1] for f in fields[1:] if f.lower().startswith("interface=")), None
    )
    if interface is None:
        interface = _IP_TYPES[kind]
        description = description.strip() + f":interface={interface.replace(':', chr(92) + ':')}"
    address = interface.replace("\\", "")
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    return AdminEndpoint(description, loopback, address or "all interfaces")


#: Bytes of randomness in a generated token (256 bits).
TOKEN_BYTES = 32


def loadOrCreateToken(path: Path) -> str:
    """The bearer token kept in ``path``, generated (mode 0600) if the file is missing.

    Raises :class:`AdminConfigError` if the file is readable by others or empty.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as e:
        raise AdminConfigError(f"{path}: cannot create the admin token file: {e}") from None
    else:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
        log.info("Generated the admin API token in {path} (mode 0600)", path=str(path))
        return token
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as e:
        raise AdminConfigError(f"{path}: cannot read the admin token file: {e}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AdminConfigError(
            f"{path}: the admin token file is readable by others (mode {stat.S_IMODE(mode):04o}); "
            "chmod 600 it"
        )
    if not token:
        raise AdminConfigError(f"{path}: the admin token file is empty")
    return token


def isoTime(seconds: float | None) -> str | None:
    """A POSIX time as ISO 8601 in UTC (``2026-12-03T12:00:00.250000+00:00``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def checksumText(value: int) -> str:
    """A 16-bit checksum (RFC 5353 PE checksum) as ``0x%04x``."""
    return f"0x{value:04x}"


def runningFields(now: float, startedAt: float | None) -> dict[str, Any]:
    """``version``, ``started_at``, ``uptime_seconds`` and ``now`` of a status document."""
    started = now if startedAt is None else startedAt
    return {
        "version": __version__,
        "started_at": isoTime(started),
        "uptime_seconds": round(now - started, 3),
        "now": isoTime(now),
    }


@dataclass
class Reply:
    """What a route answers: a status, a content type and a body."""

    body: bytes
    contentType: bytes = b"application/json"
    code: int = 200
    headers: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def json(cls, document: Any, code: int = 200) -> Reply:
        """A JSON document (indented, one trailing newline)."""
        return cls(json.dumps(document, indent=2).encode("utf-8") + b"\n", code=code)

    @classmethod
    def error(cls, code: int, message: str) -> Reply:
        """A JSON ``{"error": message}`` with status ``code``."""
        return cls.json({"error": message}, code)


#: A GET route: the request in, a reply out.
GetRoute = Callable[[Request], Reply]
#: A POST route: the request and its JSON object body in, a reply out.
PostRoute = Callable[[Request, dict[str, Any]], Reply]

#: Most bytes of a POST body.
MAX_BODY = 64 * 1024

#: Headers on every answer: no sniffing, no caching, no framing, and no active content.
_SECURITY_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"cache-control": b"no-store",
    b"x-frame-options": b"DENY",
    b"content-security-policy": b"default-src 'none'; style-src 'unsafe-inline'",
}


class AdminResource(Resource):
    """An admin API with a fixed route table and bearer-token authorization.

    ``getRoutes`` and ``postRoutes`` map a path (``"/status"``) to its handler. ``GET`` and
    ``HEAD`` need the token only when ``tokenForReads`` (set it when the listener is not
    loopback); every other method always needs it.
    """

    isLeaf = True

    def __init__(
        self,
        token: str,
        getRoutes: Mapping[str, GetRoute],
        postRoutes: Mapping[str, PostRoute] | None = None,
        *,
        tokenForReads: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.token = token
        self.getRoutes = dict(getRoutes)
        self.postRoutes = dict(postRoutes or {})
        self.tokenForReads = tokenForReads

    def _authorized(self, request: Request) -> bool:
        if not self.token:
            return False
        header = request.getHeader(b"authorization") or b""
        scheme, _, presented = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            presented.strip(), self.token.encode("utf-8")
        )

    def _route(self, request: Request) -> Reply:
        method = request.method
        local = isinstance(request.getHost(), UNIXAddress)  # type: ignore[no-untyped-call]
        if not (self.tokenForReads or local or loopbackHost(request.getHeader(b"host"))):
            # DNS rebinding: a web page whose name resolves to 127.0.0.1 reaches a loopback
            # listener, but its browser still names the page's host.
            return Reply.error(403, "the Host header must name a loopback address")
        path = "/" + "/".join(p.decode("utf-8", "replace") for p in request.postpath or [])
        path = path.rstrip("/") or "/"
        reading = method in (b"GET", b"HEAD")
        if (self.tokenForReads or not reading) and not self._authorized(request):
            reply = Reply.error(401, "this request needs Authorization: Bearer <admin token>")
            reply.headers[b"www-authenticate"] = b'Bearer realm="rserpool-admin"'
            return reply
        known = path in self.getRoutes or path in self.postRoutes
        if not known:
            return Reply.error(404, f"no such resource: {path}")
        if reading and path in self.getRoutes:
            return self.getRoutes[path](request)
        if method == b"POST" and path in self.postRoutes:
            contentType = (request.getHeader(b"content-type") or b"").split(b";")[0]
            if contentType.strip().lower() != b"application/json":
                return Reply.error(415, "POST bodies must be JSON (Content-Type: application/json)")
            content = request.content.read(MAX_BODY + 1) if request.content is not None else b""
            if len(content) > MAX_BODY:
                return Reply.error(413, "the body is too large")
            try:
                body = json.loads(content or b"{}")
            except ValueError as e:
                return Reply.error(400, f"the body is not JSON: {e}")
            if not isinstance(body, dict):
                return Reply.error(400, "the body must be a JSON object")
            return self.postRoutes[path](request, body)
        allowed = (["GET", "HEAD"] if path in self.getRoutes else []) + (
            ["POST"] if path in self.postRoutes else []
        )
        reply = Reply.error(405, f"{method.decode('ascii', 'replace')} is not allowed here")
        reply.headers[b"allow"] = ", ".join(allowed).encode("ascii")
        return reply

    def render(self, request: Request) -> bytes:
        """Authorize, route and answer ``request``."""
        reply = self._route(request)
        request.setResponseCode(reply.code)
        for name, value in {**_SECURITY_HEADERS, **reply.headers}.items():
            request.setHeader(name, value)  # type: ignore[no-untyped-call]
        request.setHeader(b"content-type", reply.contentType)  # type: ignore[no-untyped-call]
        return b"" if request.method == b"HEAD" else reply.body


def loopbackHost(host: bytes | None) -> bool:
    """Whether an HTTP Host header names this host (``localhost`` or a loopback address).

    A request without one (HTTP/1.0 tools) passes: browsers always send it.
    """
    if host is None:
        return True
    name = host.decode("ascii", "replace").strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name in ("localhost", "localhost.") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def wantsHtml(request: Request) -> bool:
    """Whether the client prefers HTML (a browser) to JSON, from its Accept header."""
    accept = (request.getHeader(b"accept") or b"").lower()
    return b"text/html" in accept


def metricsReply(request: Request, registry: CollectorRegistry) -> Reply:
    """One scrape of ``registry``: Prometheus text, or OpenMetrics when ``Accept`` asks."""
    accept = request.getHeader(b"accept") or b""
    encoder, contentType = choose_encoder(accept.decode("latin-1"))
    return Reply(encoder(registry), contentType.encode("ascii"))


# ---------------------------------------------------------------------- HTML status pages

#: The style sheet of every status page (inline: the CSP allows inline styles only).
PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef; } code { font-size: 0.95em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.1em 1em; }
dt { font-weight: bold; } .empty { color: #777; font-style: italic; }
.state-active, .state-ESTABLISHED { color: #060; }
.state-probing, .state-taking_over, .state-INIT_DONE, .state-DELETING { color: #a60; }
.state-inactive, .draining { color: #900; }
"""


def htmlCell(value: Any) -> str:
    """A table cell of ``value`` (escaped; None is a grey dash)."""
    if value is None:
        return '<td class="empty">-</td>'
    return f"<td>{escape(str(value))}</td>"


def htmlTable(
    headers: Iterable[str],
    rows: Iterable[Sequence[Any]],
    rowClass: str | Callable[[Sequence[Any]], str] = "",
) -> str:
    """A table with ``headers`` and one row per item of ``rows``; each row's class is
    ``rowClass``, or what ``rowClass(row)`` says."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{escape(rowClass if isinstance(rowClass, str) else rowClass(row))}">'
        + "".join(htmlCell(v) for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def htmlFacts(facts: Iterable[tuple[str, Any]]) -> str:
    """A definition list of (name, value) pairs: the summary at the top of a page."""
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    return f'<dl id="summary">{items}</dl>'


def htmlPage(title: str, heading: str, parts: Iterable[str]) -> bytes:
    """A whole status page: ``title``, an ``<h1>`` of ``heading`` (both escaped here), the
    already escaped HTML ``parts``, and links to the JSON and the metrics."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title><style>{PAGE_STYLE}</style></head><body>",
            f"<h1>{escape(heading)}</h1>",
            *parts,
            '<p><a href="/status">JSON</a> (<code>curl /status</code>) &middot; '
            '<a href="/metrics">Prometheus metrics</a></p></body></html>\n',
        ]
    ).encode("utf-8")


__all__ = [
    "PAGE_STYLE",
    "AdminConfigError",
    "AdminEndpoint",
    "AdminResource",
    "Reply",
    "adminEndpoint",
    "checksumText",
    "htmlCell",
    "htmlFacts",
    "htmlPage",
    "htmlTable",
    "isoTime",
    "loadOrCreateToken",
    "loopbackHost",
    "metricsReply",
    "runningFields",
    "wantsHtml",
]
