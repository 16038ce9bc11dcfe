"""Connection-level defences of a real `eventgraph serve`: slow request headers and bodies
are cut off, connections beyond the per-address and total caps are refused as they arrive
(WebSockets count), the open-files limit is raised at start, and a client that leaves in
the middle of its body is logged as such, not as an error."""

from __future__ import annotations

import base64
import contextlib
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from eventgraph.serving import ConnectionLimits, TrustedProxies, client_key
from tests.e2e.conftest import Server, start_server, stop_server

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
PER_IP = 5

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/limits"), reason="needs Linux (/proc, all of 127.0.0.0/8)"
)


@pytest.fixture(scope="module")
def guarded(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with small limits; started with a low soft open-files limit (inherited), so
    that raising it at start shows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, hard, 512)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        running = start_server(
            server_database_url,
            tmp_path_factory.mktemp("guarded"),
            EVENTGRAPH_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
            EVENTGRAPH_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
            EVENTGRAPH_MAX_CONNECTIONS_PER_IP=str(PER_IP),
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    yield running
    stop_server(running)


def address(server: Server) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def connect(server: Server, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection from `source` (any 127.x.y.z is this machine, another address)."""
    return socket.create_connection(address(server), timeout=10, source_address=(source, 0))


def read_until_closed(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent until it closed the connection, or None if it is still open
    after `within` seconds."""
    sock.settimeout(within)
    received = b""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return received
    return None


def query_time(server: Server) -> float:
    started = time.monotonic()
    response = httpx.post(server.url + "/graphql", json={"query": "{ __typename }"}, timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}
    return time.monotonic() - started


def log_lines(server: Server) -> list[str]:
    return server.log.read_text(errors="replace").splitlines()


def test_request_headers_that_never_end_are_cut_after_the_timeout(guarded: Server) -> None:
    with connect(guarded, "127.0.0.11") as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for _ in range(3):  # a byte now and then keeps nothing alive
            time.sleep(0.3)
            sock.sendall(b"a")
        answer = read_until_closed(sock, HEADER_TIMEOUT + 5)
        assert answer is not None, "the connection was still open long after the timeout"
        assert time.monotonic() - started < HEADER_TIMEOUT + 3
        assert answer.startswith(b"HTTP/1.1 408"), answer
    with connect(guarded, "127.0.0.12") as idle:  # and one that sends nothing at all
        assert read_until_closed(idle, HEADER_TIMEOUT + 5) is not None


def test_a_body_that_never_arrives_is_answered_408_and_the_connection_closed(
    guarded: Server,
) -> None:
    with connect(guarded, "127.0.0.13") as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 262144\r\n\r\n{"
        )
        answer = read_until_closed(sock, BODY_TIMEOUT + 8)
        assert answer is not None, "the connection was still open long after the timeout"
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < BODY_TIMEOUT + 3
    # a route that never reads its body: the connection is closed all the same
    with connect(guarded, "127.0.0.14") as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n")
        assert read_until_closed(sock, BODY_TIMEOUT + 10) is not None


def test_connections_beyond_the_per_address_cap_are_refused_and_others_are_served(
    guarded: Server,
) -> None:
    held = [connect(guarded, "127.0.0.21") for _ in range(PER_IP)]
    try:
        time.sleep(0.2)
        refused = []
        for _ in range(3 * PER_IP):
            with connect(guarded, "127.0.0.21") as extra:
                refused.append(read_until_closed(extra, 2))
        assert all(r is not None and r.startswith(b"HTTP/1.1 503") for r in refused), refused
        assert query_time(guarded) < 1.0, "another client is served at once"
        for sock in held:  # the first ones were admitted, still open
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    with connect(guarded, "127.0.0.21") as again:  # closed ones give their slots back
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(again, 5)
        assert answer is not None and answer.startswith(b"HTTP/1.1 200"), answer


def test_a_trusted_proxy_is_not_held_to_the_per_address_cap(guarded: Server) -> None:
    # 127.0.0.1 is in uvicorn's default FORWARDED_ALLOW_IPS: a proxy on this machine, whose
    # address every client behind it shares. Connections from it count only in the total.
    held = [connect(guarded, "127.0.0.1") for _ in range(PER_IP + 3)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for sock in held:
            assert read_response(sock).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_clients_are_counted_by_ipv4_address_and_by_ipv6_slash_64() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"  # a dual-stack socket's IPv4
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("") == ""  # a Unix socket: no address, one client
    assert client_key("not an address") == "not an address"


def test_the_per_address_cap_spares_trusted_proxies_and_counts_an_ipv6_slash_64_as_one() -> None:
    limits = ConnectionLimits(
        total=13,
        per_ip=2,
        header_timeout=0,
        body_timeout=0,
        trusted=TrustedProxies("127.0.0.1, 10.0.0.0/8,::1"),
    )
    for n in range(2):
        assert limits.admit(n, f"2001:db8::{n + 1}") is None
    assert limits.admit(2, "2001:db8::ffff:1") is not None  # the same /64
    assert limits.admit(3, "2001:db8:0:1::1") is None  # another /64
    for n in range(10, 15):
        assert limits.admit(n, "10.1.2.3") is None
        assert limits.admit(n + 10, "127.0.0.1") is None
    assert limits.admit(30, "10.1.2.3") is not None  # the total still holds
    limits.release(0)
    assert limits.admit(0, "2001:db8::9") is None
    assert len(limits.open) == 13

    everyone = TrustedProxies("*")
    assert "192.0.2.1" in everyone and "" in everyone
    default = TrustedProxies("127.0.0.1,::1")
    assert "127.0.0.1" in default and "::1" in default
    assert "127.0.0.2" not in default and "" not in default and "10.0.0.1" not in default
    assert "10.9.9.9" in TrustedProxies("10.0.0.0/8") and "unix" in TrustedProxies("unix")
    assert "10.0.0.1" not in TrustedProxies("10.0.0.1/8")  # not a network: as uvicorn reads it


def websocket(server: Server, source: str) -> socket.socket:
    sock = connect(server, source)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    )
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 101"), "the WebSocket was accepted"
    return sock


def test_websockets_count_as_connections(guarded: Server) -> None:
    sockets = [websocket(guarded, "127.0.0.31") for _ in range(PER_IP)]
    try:
        time.sleep(HEADER_TIMEOUT + 0.5)  # an open WebSocket is not a slow request
        with connect(guarded, "127.0.0.31") as extra:
            answer = read_until_closed(extra, 2)
            assert answer is not None and answer.startswith(b"HTTP/1.1 503"), answer
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(0.5)
    websocket(guarded, "127.0.0.31").close()  # slots given back when they close


def test_the_soft_open_files_limit_is_raised_to_the_hard_limit(guarded: Server) -> None:
    limits = Path(f"/proc/{guarded.process.pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line
    assert int(soft) > 512 or resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 512


def test_connections_beyond_the_total_are_refused(server_database_url: str, tmp_path: Path) -> None:
    server = start_server(
        server_database_url,
        tmp_path,
        EVENTGRAPH_MAX_CONNECTIONS="6",
        EVENTGRAPH_MAX_CONNECTIONS_PER_IP="0",
        EVENTGRAPH_HEADER_TIMEOUT_SECONDS="30",
    )
    held: list[socket.socket] = []
    try:
        for n in range(6):
            held.append(connect(server, f"127.0.0.{41 + n}"))
        time.sleep(0.2)
        with connect(server, "127.0.0.50") as extra:
            answer = read_until_closed(extra, 2)
            assert answer is not None and answer.startswith(b"HTTP/1.1 503"), answer
        held.pop().close()
        time.sleep(0.3)
        assert query_time(server) < 1.0
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
        stop_server(server)


def test_a_client_that_leaves_mid_body_is_logged_as_a_disconnect(guarded: Server) -> None:
    before = len(log_lines(guarded))
    with connect(guarded, "127.0.0.61") as sock:
        sock.sendall(
            b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"query": "{ __typename ' + b" " * 100
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        new = log_lines(guarded)[before:]
        if any("disconnected" in line for line in new):
            break
        time.sleep(0.1)
    new = log_lines(guarded)[before:]
    assert any("disconnected" in line for line in new), new
    assert not [line for line in new if "Traceback" in line or " ERROR " in line], new


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, read from a kept-alive connection."""
    sock.settimeout(5)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole response: {received!r}"
        body += chunk
    return head


def trickle_blank_lines(sock: socket.socket) -> None:
    """Send "\r\n" twice a second: the connection must be closed within the header timeout.
    The parser skips blank lines between requests, so no request ever begins; each byte
    used to reset uvicorn's keep-alive timer and nothing else ran."""
    answered = time.monotonic()
    closed = None
    while time.monotonic() - answered < HEADER_TIMEOUT + 6:
        try:
            sock.sendall(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            closed = b""
            break
        closed = read_until_closed(sock, 0.5)
        if closed is not None:
            break
    assert closed is not None, "the connection was still open long after the timeout"
    assert time.monotonic() - answered < HEADER_TIMEOUT + 2


def test_a_kept_alive_connection_that_trickles_blank_lines_is_cut_after_the_timeout(
    guarded: Server,
) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(guarded, "127.0.0.71") as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT / 3)  # a next request in time is served as ever
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        trickle_blank_lines(sock)
    # answered before its body was in (a route that does not read it), then the body
    with connect(guarded, "127.0.0.72") as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 405")
        sock.sendall(b"0123456789")
        trickle_blank_lines(sock)
