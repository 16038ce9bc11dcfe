"""Which hosts the server answers to, and which browser origins may call it.

Hosts: `EVENTGRAPH_ALLOWED_HOSTS` (comma-separated names, each optionally with a port, or
`*.example.com` for its subdomains, or `*` for any). A request or WebSocket handshake whose
Host is not allowed gets 400 before anything else runs: a browser page on an attacker's name
that resolves to this server (DNS rebinding) reaches neither the API, the WebSocket nor
/metrics. While the development secret is in use, localhost names are allowed besides the
configured ones. In production with the setting unset any Host is accepted (a warning says so
at start); with it set, a Host that is an IP address literal is accepted too, since no page
can be rebound onto an address (probes and scrapers that reach replicas by address).

Origins: `EVENTGRAPH_CORS_ORIGINS` (comma-separated), the server's own origin always, and,
while the development secret is in use, any port of `http://localhost` and
`http://127.0.0.1` (a Vite or webpack dev server). "The server's own" compares scheme, host
and port: an `https://host` page is not `http://host`. The request's scheme is the one
uvicorn reports, which follows X-Forwarded-Proto only from the proxies uvicorn trusts
(`FORWARDED_ALLOW_IPS`, by default 127.0.0.1 and ::1).

HTTP gets Starlette's CORS middleware (preflight, no credentials: the token travels in the
Authorization header). A WebSocket handshake is checked here too, since browsers send any
page's Origin with it and CORS does not apply to WebSockets: a browser on an origin not
allowed is refused before the handshake completes (cross-site WebSocket hijacking). A
client that sends no Origin (not a browser) is accepted; it has to sign in anyway."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

DEV_ORIGINS = r"http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(
    r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+|\*(?:\.[A-Za-z0-9_-]+)+|\*)(?::([0-9]{1,5}))?"
)


def split_host(value: str) -> tuple[str, int | None] | None:
    """A Host header or setting entry as (name, port): the name lower-cased, without a
    trailing dot or IPv6 brackets; None when it is not a host name at all."""
    found = _HOST.fullmatch(value.strip())
    if found is None:
        return None
    name = found.group(1).lower().rstrip(".")
    if name.startswith("["):
        try:
            name = str(ipaddress.IPv6Address(name[1:-1]))
        except ValueError:
            return None
    port = int(found.group(2)) if found.group(2) else None
    if not name or (port is not None and port > 65535):
        return None
    return name, port


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Hosts:
    allowed: tuple[tuple[str, int | None], ...]
    """Names, each with its port or None for any port; `*.suffix` and `*` are wildcards."""
    any_host: bool
    addresses: bool
    """Whether a Host that is an IP address literal is allowed whatever the list says."""

    @classmethod
    def parse(cls, configured: str | None, development: bool) -> Hosts:
        """Raises ValueError naming an entry that is not a host name."""
        entries: list[tuple[str, int | None]] = []
        for entry in (configured or "").split(","):
            if not entry.strip():
                continue
            parsed = split_host(entry)
            if parsed is None:
                raise ValueError(f"not a host name: {entry.strip()!r}")
            entries.append(parsed)
        if development:
            entries.extend((name, None) for name in LOCAL_HOSTS)
        any_host = ("*", None) in entries or not entries
        return cls(tuple(entries), any_host, addresses=not development)

    @property
    def unchecked(self) -> bool:
        """Production with nothing configured: any Host is accepted."""
        return self.any_host and ("*", None) not in self.allowed

    def allows(self, host: str | None) -> bool:
        # What DNS rebinding needs is a browser sending an attacker's name as Host. No browser
        # omits Host (an HTTP/1.0 health probe may), and none sends a loopback name for a page
        # that is not on this machine: those always pass (`eventgraph status --url
        # http://localhost:8000` inside a container, probes without Host).
        if host is None:
            return True
        parsed = split_host(host)
        if parsed is None or parsed[0].startswith("*"):
            return False
        if self.any_host:
            return True
        name, port = parsed
        if name in LOCAL_HOSTS or (self.addresses and _is_address(name)):
            return True
        for allowed, allowed_port in self.allowed:
            if allowed_port is not None and allowed_port != port:
                continue
            if allowed == name or (allowed.startswith("*.") and name.endswith(allowed[1:])):
                return True
        return False


async def refuse_host(scope: Scope, receive: Receive, send: Send) -> None:
    """400 for a request, or for a WebSocket handshake where the server can answer one
    (uvicorn can); otherwise the handshake is refused with 403."""
    response = PlainTextResponse("Host not allowed\n", status_code=400)
    if scope["type"] == "websocket":
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(1008, "Host not allowed")
        return
    await response(scope, receive, send)


class HostCheck:
    """The Host check as middleware, for applications without EventGraphApp's own."""

    def __init__(self, app: ASGIApp, hosts: Hosts) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.hosts.allows(header(scope, b"host")):
            await refuse_host(scope, receive, send)
            return
        await self.app(scope, receive, send)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _origin_parts(origin: str) -> tuple[str, str, int] | None:
    try:
        split = urlsplit(origin)
        port = split.port
    except ValueError:
        return None
    scheme = split.scheme.lower()
    if scheme not in DEFAULT_PORTS or not split.hostname:
        return None
    hostname = split.hostname.rstrip(".")
    if ":" in hostname:
        try:
            hostname = str(ipaddress.IPv6Address(hostname))
        except ValueError:
            return None
    return scheme, hostname, port or DEFAULT_PORTS[scheme]


def page_scheme(scheme: str) -> str:
    """The scheme of the pages a request belongs with: a WebSocket's `ws`/`wss` is the
    `http`/`https` of the page that opened it."""
    return {"ws": "http", "wss": "https"}.get(scheme, scheme)


@dataclass(frozen=True)
class Origins:
    allowed: tuple[str, ...]
    development: bool

    @classmethod
    def parse(cls, configured: str | None, development: bool) -> Origins:
        allowed = tuple(o.strip().rstrip("/") for o in (configured or "").split(",") if o.strip())
        return cls(allowed, development)

    def allows(self, origin: str, host: str | None, scheme: str | None = None) -> bool:
        """Whether a page on `origin` may call a server reached at `host` over `scheme`
        (`http`, `https`, `ws` or `wss`). Without a scheme only host and port are compared:
        EventGraphApp checks every WebSocket with its scheme before this is asked again
        without one."""
        if origin in self.allowed or "*" in self.allowed:
            return True
        if self.development and re.fullmatch(DEV_ORIGINS, origin):
            return True
        # The server's own pages (GraphiQL, the dashboard) are same-origin.
        page = _origin_parts(origin)
        own = split_host(host) if host is not None else None
        if page is None or own is None:
            return False
        page_scheme_, page_host, page_port = page
        own_scheme = page_scheme(scheme) if scheme is not None else page_scheme_
        if own_scheme not in DEFAULT_PORTS:
            return False
        own_host, own_port = own
        return (page_scheme_, page_host, page_port) == (
            own_scheme,
            own_host,
            own_port or DEFAULT_PORTS[own_scheme],
        )

    def middleware(self) -> Sequence[Middleware]:
        return [
            Middleware(
                CORSMiddleware,
                allow_origins=list(self.allowed),
                allow_origin_regex=DEV_ORIGINS if self.development else None,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "X-Request-Id",
                    "EventGraph-At-Least",
                ],
                expose_headers=["X-Request-Id", "X-Correlation-Id"],
                allow_credentials=False,
                max_age=600,
            )
        ]
