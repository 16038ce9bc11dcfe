"""Browsers on other origins: CORS for HTTP and an Origin check on the WebSocket handshake
(EVENTGRAPH_CORS_ORIGINS; in development, any localhost port)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.kit.server import Server, start_server, stop_server, token

APP = "http://app.example"
EVIL = "http://evil.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,eventgraph-at-least",
}


@pytest.fixture(scope="module")
def configured(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        server_database_url, tmp_path_factory.mktemp("cors"), EVENTGRAPH_CORS_ORIGINS=APP
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def development(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """No EVENTGRAPH_JWT_SECRET: the development secret, and local dev servers allowed."""
    running = start_server(
        server_database_url, tmp_path_factory.mktemp("dev"), EVENTGRAPH_JWT_SECRET=""
    )
    yield running
    stop_server(running)


def preflight(server: Server, origin: str) -> httpx.Response:
    return httpx.options(server.url + "/graphql", headers={"Origin": origin, **PREFLIGHT})


async def handshake(server: Server, origin: str | None) -> str:
    """The first message after connection_init, or the refusal."""
    extra = {"origin": origin} if origin else {}
    try:
        async with websockets.connect(
            server.url.replace("http", "ws") + "/graphql",
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            **extra,  # type: ignore[arg-type]
        ) as ws:
            auth = {"Authorization": f"Bearer {token('origin-user')}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
            return str(json.loads(await ws.recv())["type"])
    except websockets.InvalidStatus as refused:
        return f"refused {refused.response.status_code}"
    except websockets.ConnectionClosed as closed:
        return f"closed {closed.rcvd.code if closed.rcvd else None}"


def test_an_allowed_origin_passes_the_preflight_and_reads_the_answer(configured: Server) -> None:
    allowed = preflight(configured, APP)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    # session consistency: a browser may send the tab's position
    assert "eventgraph-at-least" in allowed.headers["access-control-allow-headers"].lower()
    answer = httpx.post(
        configured.url + "/graphql", json={"query": "{ __typename }"}, headers={"Origin": APP}
    )
    assert answer.headers["access-control-allow-origin"] == APP
    assert answer.json() == {"data": {"__typename": "Query"}}


def test_another_origin_is_refused(configured: Server) -> None:
    assert preflight(configured, EVIL).status_code == 400
    answer = httpx.post(
        configured.url + "/graphql", json={"query": "{ __typename }"}, headers={"Origin": EVIL}
    )
    assert "access-control-allow-origin" not in answer.headers  # the browser hides it
    assert preflight(configured, "http://localhost:5173").status_code == 400  # not in production


async def test_the_websocket_checks_the_browsers_origin(configured: Server) -> None:
    assert await handshake(configured, APP) == "connection_ack"
    assert await handshake(configured, None) == "connection_ack"  # not a browser
    assert await handshake(configured, configured.url) == "connection_ack"  # same origin
    assert await handshake(configured, EVIL) == "refused 403"


async def test_local_dev_servers_work_out_of_the_box_in_development(development: Server) -> None:
    dev = "http://localhost:5173"
    assert preflight(development, dev).headers["access-control-allow-origin"] == dev
    assert preflight(development, "http://127.0.0.1:3000").status_code == 200
    assert preflight(development, EVIL).status_code == 400
    assert await handshake(development, EVIL) == "refused 403"
    # The handshake is accepted; the token (not signed with its development secret) is not.
    assert await handshake(development, dev) == "closed 4403"


async def test_same_origin_means_the_same_scheme_host_and_port(configured: Server) -> None:
    port = int(configured.url.rsplit(":", 1)[1])
    assert await handshake(configured, f"http://127.0.0.1:{port}") == "connection_ack"
    # Host and port match, the scheme does not: an https page is another origin.
    assert await handshake(configured, f"https://127.0.0.1:{port}") == "refused 403"
    assert await handshake(configured, f"http://127.0.0.1:{port + 1}") == "refused 403"
    assert await handshake(configured, "http://127.0.0.1") == "refused 403"
    assert await handshake(configured, f"ftp://127.0.0.1:{port}") == "refused 403"
