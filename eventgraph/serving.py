"""Connection-level defences for `eventgraph serve`, below the application: a connection
that is slow to send its request is closed, and connections beyond a total and beyond a
per-client-address cap are refused as they arrive, so that no client, unauthenticated,
can hold the process's open files. uvicorn has neither a header timeout nor a connection
cap of its own (`limit_concurrency` only answers 503 once a request's headers are in, which
a client that never finishes them never reaches), hence these subclasses of the protocols
uvicorn runs here: httptools for HTTP, websockets' sans-I/O one for WebSockets."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger(__name__)

FILES_KEPT_FOR_THE_REST = 256
"""Open files kept out of the connection cap: the database pools, the log, the data files."""

BODY_TIMEOUT_GRACE_SECONDS = 5.0
"""The application answers a slow body with 408 at the body timeout; the protocol closes a
connection whose request body is still incomplete this much later (a route that never reads
its body, or an answer that could not be written)."""

REFUSAL_LOG_EVERY_SECONDS = 10.0


def _response(status: bytes, text: str) -> bytes:
    body = text.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


TOO_MANY = _response(b"503 Service Unavailable", "too many connections")
TOO_SLOW = _response(b"408 Request Timeout", "request headers not received in time")


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit (allowed to any process);
    return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open files limit from %d: %s", soft, exc)
    return soft


def client_key(ip: str) -> str:
    """Whom the per-address cap counts a peer as: an IPv4 address, its own even when a
    dual-stack socket shows it as ::ffff:a.b.c.d, or an IPv6 /64 (one subscriber's
    network: a single client can take any number of its addresses)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # a Unix socket's peer, which has no address
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class TrustedProxies:
    """The peers uvicorn believes X-Forwarded-For from: FORWARDED_ALLOW_IPS, read as uvicorn
    reads it (`eventgraph serve` leaves the setting to uvicorn): "*" for any peer, or
    addresses, networks and literal names separated by commas."""

    def __init__(self, spec: str) -> None:
        self.everyone = spec.strip() == "*"
        self.addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.literals: set[str] = set()
        for entry in (item.strip() for item in spec.split(",")):
            try:
                if "/" in entry:
                    self.networks.append(ipaddress.ip_network(entry))
                else:
                    self.addresses.add(ipaddress.ip_address(entry))
            except ValueError:
                self.literals.add(entry)

    @classmethod
    def from_environment(cls) -> TrustedProxies:
        return cls(os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))

    def __contains__(self, ip: str) -> bool:
        if self.everyone:
            return True
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ip in self.literals
        return address in self.addresses or any(address in net for net in self.networks)

    def __str__(self) -> str:
        if self.everyone:
            return "*"
        entries = [*map(str, self.addresses), *map(str, self.networks), *self.literals]
        return ",".join(sorted(entry for entry in entries if entry))


@dataclass
class ConnectionLimits:
    """The open connections (HTTP and WebSocket alike) by client (`client_key`). 0 turns a
    cap or a timeout off. A trusted proxy speaks for every client behind it, so it is held
    to the total only: the per-client cap belongs at the proxy."""

    total: int
    per_ip: int
    header_timeout: float
    body_timeout: float
    trusted: TrustedProxies = field(default_factory=TrustedProxies.from_environment)
    open: dict[int, str] = field(default_factory=dict)
    by_ip: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    logged_at: float = 0.0
    trusted_beyond_cap_logged: bool = False

    def admit(self, key: int, ip: str) -> str | None:
        """Count the connection in, or say why it is refused."""
        if self.total and len(self.open) >= self.total:
            return self._refuse(ip, f"{self.total} connections open in all")
        client = client_key(ip)
        if self.per_ip and self.by_ip[client] >= self.per_ip:
            if ip not in self.trusted:
                return self._refuse(ip, f"{self.per_ip} connections open from {client}")
            if not self.trusted_beyond_cap_logged:
                self.trusted_beyond_cap_logged = True
                log.info(
                    "%s, a trusted proxy (FORWARDED_ALLOW_IPS=%s), has more than %d connections"
                    " open: held to the total only; cap per client at the proxy",
                    ip,
                    self.trusted,
                    self.per_ip,
                )
        self.open[key] = client
        self.by_ip[client] += 1
        return None

    def release(self, key: int) -> None:
        ip = self.open.pop(key, None)
        if ip is not None:
            self.by_ip[ip] -= 1
            if not self.by_ip[ip]:
                del self.by_ip[ip]

    def _refuse(self, ip: str, why: str) -> str:
        # A flood of refusals is summed up, not written one line each.
        self.refused += 1
        now = time.monotonic()
        if now - self.logged_at >= REFUSAL_LOG_EVERY_SECONDS:
            log.warning("refused %d connection(s) (the last from %s): %s", self.refused, ip, why)
            self.refused, self.logged_at = 0, now
        return why


def protocols(limits: ConnectionLimits) -> tuple[type[Any], type[Any]]:
    """uvicorn's HTTP and WebSocket protocol classes, bound to `limits`."""

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        """Holds the slot its HTTP connection took, until the socket closes."""

        def connection_lost(self, exc: Exception | None) -> None:
            try:
                super().connection_lost(exc)
            finally:
                limits.release(id(self.transport))

    class GuardedHttp(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _admitted = False
        _in_message = False
        _kept_alive = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ip = self.client[0] if self.client else ""
            if limits.admit(id(transport), ip) is not None:
                transport.write(TOO_MANY)
                transport.close()
                return
            self._admitted = True
            self._arm(limits.header_timeout, self._headers_too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._admitted:
                limits.release(id(self.transport))
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_message = True
            if self._deadline is None:  # a pipelined request, begun before the last answer
                self._arm(limits.header_timeout, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if limits.body_timeout and not self.parser.should_upgrade():
                self._arm(limits.body_timeout + BODY_TIMEOUT_GRACE_SECONDS, self._body_too_slow)

        def on_message_complete(self) -> None:
            self._disarm()
            self._in_message = False
            super().on_message_complete()
            if self.cycle is not None and self.cycle.response_complete:
                self._await_next_request()  # answered before its body was all in

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            if not (pipelined or self._in_message):
                self._await_next_request()

        def _await_next_request(self) -> None:
            # Idle and the next request's headers share one deadline, armed here and not
            # reset by what arrives: uvicorn's keep-alive timer restarts on every byte, and
            # the parser skips blank lines between requests (no message ever begins), so
            # "\r\n" now and then would otherwise hold the connection for ever.
            if not self.transport.is_closing():
                self._kept_alive = True
                self._arm(limits.header_timeout, self._headers_too_slow)

        def handle_websocket_upgrade(self) -> None:
            # The WebSocket protocol takes the transport, and with it the slot.
            self._disarm()
            self._admitted = False
            super().handle_websocket_upgrade()

        def _arm(self, seconds: float, then: Any) -> None:
            self._disarm()
            if seconds:
                self._deadline = self.loop.call_later(seconds, then)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.info(
                    "closed a connection from %s: request headers not complete within %g s",
                    self.client[0] if self.client else "?",
                    limits.header_timeout,
                )
                # An idle kept-alive connection is closed without a word, as uvicorn's own
                # keep-alive timeout does: a client's pool may be sending on it just now.
                if self._in_message or not self._kept_alive:
                    self.transport.write(TOO_SLOW)
                self.transport.close()

        def _body_too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                log.info(
                    "closed a connection from %s: request body not complete within %g s",
                    self.client[0] if self.client else "?",
                    limits.body_timeout,
                )
                self.transport.close()

    return GuardedHttp, GuardedWebSocket
