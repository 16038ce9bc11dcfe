"""The Host header (EVENTGRAPH_ALLOWED_HOSTS; in development, localhost names only), no
redirect built from it, and text logs a client cannot forge: control characters escaped,
long paths truncated and logged once, no query string in any access line."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from tests.kit.database import fresh_database
from tests.kit.server import SECRET, Server, free_port, start_server, stop_server, token

NAME = "api.example"


@pytest.fixture(scope="module")
def listed(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Production, with EVENTGRAPH_ALLOWED_HOSTS: one name on any port, one on its port."""
    port = free_port()
    running = start_server(
        server_database_url,
        tmp_path_factory.mktemp("hosts"),
        port,
        EVENTGRAPH_ALLOWED_HOSTS=f"{NAME}, ops.example:{port}",
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def development(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The development secret (no EVENTGRAPH_JWT_SECRET): localhost names only."""
    running = start_server(
        server_database_url, tmp_path_factory.mktemp("devhosts"), EVENTGRAPH_JWT_SECRET=""
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def texts(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Production without EVENTGRAPH_ALLOWED_HOSTS (any Host), text logs."""
    running = start_server(server_database_url, tmp_path_factory.mktemp("texts"))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def jsons(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        server_database_url, tmp_path_factory.mktemp("jsons"), EVENTGRAPH_LOG_FORMAT="json"
    )
    yield running
    stop_server(running)


def port_of(server: Server) -> int:
    port = urlsplit(server.url).port
    assert port is not None
    return port


def raw(server: Server, request: bytes) -> bytes:
    """Send one HTTP/1.1 request as bytes and read the answer until the server closes or
    the head is complete (a WebSocket handshake's answer has no body)."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def handshake(server: Server, host: str, path: str = "/graphql", origin: str | None = None) -> int:
    """The status of a WebSocket handshake sent with this Host (101: accepted)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: graphql-transport-ws",
        *([f"Origin: {origin}"] if origin else []),
    ]
    return status_of(raw(server, ("\r\n".join(lines) + "\r\n\r\n").encode()))


def get(server: Server, path: str, host: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"Host": host}, timeout=10)


def test_a_host_not_listed_is_refused_over_http_and_at_the_websocket_handshake(
    listed: Server,
) -> None:
    port = port_of(listed)
    for host in [f"{NAME}:{port}", NAME, f"API.EXAMPLE:{port}", f"ops.example:{port}"]:
        assert get(listed, "/healthz", host).status_code == 200, host
    # An IP address cannot be rebound: probes and scrapers by address keep working.
    assert get(listed, "/healthz", f"127.0.0.1:{port}").status_code == 200
    for host in ["evil.example", f"evil.example:{port}", f"ops.example:{port + 1}", "a b"]:
        refused = get(listed, "/healthz", host)
        assert refused.status_code == 400, host
        assert "host" in refused.text.lower()
        assert get(listed, "/metrics", host).status_code == 400
        assert get(listed, "/graphql", host).status_code == 400
    assert handshake(listed, f"{NAME}:{port}") == 101
    assert handshake(listed, f"evil.example:{port}") == 400


def test_loopback_names_and_a_missing_host_always_pass(listed: Server) -> None:
    """No rebinding page sends them: a browser sends the page's own name. So a command run
    inside the container (`eventgraph status --url http://localhost:8000`) and an HTTP/1.0
    probe without Host keep working when EVENTGRAPH_ALLOWED_HOSTS is set."""
    port = port_of(listed)
    for host in [f"localhost:{port}", "localhost", f"[::1]:{port}"]:
        assert get(listed, "/healthz", host).status_code == 200, host
    answer = raw(listed, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 200


def test_development_answers_only_to_localhost_names(development: Server) -> None:
    port = port_of(development)
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"]:
        assert get(development, "/healthz", host).status_code == 200, host
    # DNS rebinding: an attacker's name resolved to 127.0.0.1 reaches neither the open
    # /metrics of development nor the WebSocket.
    for host in [f"rebind.example:{port}", f"192.168.1.5:{port}"]:
        assert get(development, "/metrics", host).status_code == 400, host
        assert handshake(development, host) == 400, host
    assert get(development, "/metrics", f"localhost:{port}").status_code == 200
    assert handshake(development, f"localhost:{port}") == 101


@pytest.fixture
async def projector_database(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


def test_the_projectors_endpoints_check_the_host_too(
    projector_database: str, tmp_path: Path
) -> None:
    """`eventgraph project --port` serves /metrics as well: the same Host check."""
    port = free_port()
    log = tmp_path / "projector.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "eventgraph.cli", "project", "--port", str(port)],
            env={
                **os.environ,
                "DATABASE_URL": projector_database,
                "EVENTGRAPH_JWT_SECRET": SECRET,
                "EVENTGRAPH_DATA_DIR": str(tmp_path / "data"),
                "EVENTGRAPH_ALLOWED_HOSTS": NAME,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for path in ["/healthz", "/metrics"]:
            assert httpx.get(url + path, headers={"Host": NAME}).status_code == 200
            assert httpx.get(url + path, headers={"Host": "evil.example"}).status_code == 400
        assert httpx.get(url + "/healthz/", headers={"Host": NAME}).status_code == 404
    finally:
        process.terminate()
        process.wait(20)


def test_no_redirect_is_built_from_the_host(texts: Server) -> None:
    for path in ["/graphql/", "/healthz/", "/static"]:
        answer = get(texts, path, "evil.example")
        assert answer.status_code == 404, (path, answer.status_code, answer.headers)
        assert "location" not in answer.headers


def log_after(server: Server, marker: str, seconds: float = 5) -> str:
    """The server's log once it mentions `marker`."""
    deadline = time.monotonic() + seconds
    while True:
        text = Path(server.log).read_text(errors="replace")
        if marker in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


FORGED = "2026-01-01 00:00:00,000 ERROR eventgraph.requests: forged"


def test_text_logs_escape_control_characters_a_client_sends(texts: Server) -> None:
    marker = uuid.uuid4().hex
    path = f"/{marker}%0a{FORGED.replace(' ', '%20')}%0d%1b[31mred%1b[0m%e2%80%a8sep%c2%85nel%00"
    answer = raw(texts, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_of(answer) == 404
    text = log_after(texts, marker)
    [line] = [line for line in text.splitlines() if marker in line]
    assert "\\x0a" in line and "\\x1b[31mred" in line and "\\u2028" in line
    assert not any(line.startswith(FORGED) for line in text.splitlines())
    for raw_char in ["\x1b", "\r", "\u2028", "\x85", "\x00"]:
        assert raw_char not in text, repr(raw_char)
    assert line.count(marker) == 1, line


def test_a_long_path_is_logged_once_truncated(texts: Server) -> None:
    marker = uuid.uuid4().hex
    path = f"/{marker}" + "a" * 65_000
    answer = raw(texts, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_of(answer) == 404
    text = log_after(texts, marker)
    assert text.count(marker) == 1
    [line] = [line for line in text.splitlines() if marker in line]
    assert len(line) < 1000 and f"...[{len(path)} chars]" in line, line[:400]


async def test_no_websocket_access_line_carries_its_query_string(texts: Server) -> None:
    secret = "q" + uuid.uuid4().hex
    url = texts.url.replace("http", "ws") + f"/graphql?token={secret}"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        auth = {"Authorization": f"Bearer {token('query-user')}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    # refused at the handshake (another origin) and an unknown path: logged without it too
    assert handshake(texts, "127.0.0.1", f"/graphql?token={secret}", "http://evil.example") == 403
    assert handshake(texts, "127.0.0.1", f"/elsewhere?token={secret}") == 403
    await asyncio.sleep(0.5)
    text = Path(texts.log).read_text()
    assert secret not in text
    assert '"WebSocket /graphql" [accepted]' in text  # the line stays, without its query
    assert "?token" not in text


def test_json_logs_stay_one_object_per_line(jsons: Server) -> None:
    marker = uuid.uuid4().hex
    path = f"/{marker}%0a%7B%22level%22%3A%22ERROR%22%7D%1b[31m%e2%80%a8"
    answer = raw(jsons, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status_of(answer) == 404
    text = log_after(jsons, marker)
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    [mine] = [r for r in records if marker in r.get("path", "")]
    assert mine["path"] == f'/{marker}\n{{"level":"ERROR"}}\x1b[31m\u2028'
    assert "\x1b" not in text and "\u2028" not in text
