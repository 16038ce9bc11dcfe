"""Fair use, through a running server: one user's concurrent operations and subscriptions
are capped per process (the excess answered BAD_REQUEST, others unaffected); /readyz tells
anyone without the metrics token only whether the server is ready; `parked_events` refuses
TRUNCATE; a token naming an audience, or a look-alike subject, is UNAUTHENTICATED."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import websockets

from tests.kit.server import SECRET, Api, Server, Users, start_server, stop_server, token
from tests.kit.ws import MY_ORDERS, Client, acked, connect

METRICS_TOKEN = "fair-" + uuid.uuid4().hex
SLOW = "query($at: Position) { products(first: 1, atLeast: $at) { edges { cursor } } }"
FAST = "{ products(first: 1) { edges { cursor } } }"
FAR = 10**12
"""A position no read model reaches: the query waits EVENTGRAPH_READ_WAIT_SECONDS."""


@pytest.fixture(scope="module")
def fair(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        server_database_url,
        tmp_path_factory.mktemp("fair"),
        EVENTGRAPH_MAX_OPERATIONS_PER_USER="2",
        EVENTGRAPH_MAX_SUBSCRIPTIONS_PER_USER="3",
        EVENTGRAPH_READ_WAIT_SECONDS="3",
        EVENTGRAPH_METRICS_TOKEN=METRICS_TOKEN,
    )
    yield running
    stop_server(running)


async def query_over_ws(client: Client, op_id: str, query: str, **variables: Any) -> None:
    await client.send(
        {"type": "subscribe", "id": op_id, "payload": {"query": query, "variables": variables}}
    )


async def no_error_so_far(client: Client) -> None:
    """Everything sent before has been handled without an `error` message."""
    await client.send({"type": "ping"})
    while (message := await client.recv(5))["type"] != "pong":
        assert message["type"] != "error", message


async def test_one_users_concurrent_operations_are_capped_and_others_go_on(fair: Server) -> None:
    alice_token = token(f"heavy-{uuid.uuid4().hex[:6]}")
    alice = await acked(fair.url, alice_token)
    async with httpx.AsyncClient(timeout=30) as client:
        alice_http = Api(client, fair.url, alice_token)
        bob = Api(client, fair.url, token(f"light-{uuid.uuid4().hex[:6]}"))
        try:
            for i in range(4):  # two run, two wait for a slot
                await query_over_ws(alice, f"slow-{i}", SLOW, at=FAR)
            started = time.perf_counter()
            await query_over_ws(alice, "one-too-many", FAST)
            message = await alice.recv(2)
            assert message["id"] == "one-too-many" and message["type"] == "next", message
            [error] = message["payload"]["errors"]
            assert error["extensions"]["code"] == "BAD_REQUEST"
            assert "too many operations of this user at once" in error["message"]
            assert time.perf_counter() - started < 1, "refused at once, not queued"
            assert (await alice.recv(2)) == {"type": "complete", "id": "one-too-many"}

            over_http = await alice_http.raw(FAST)  # the same user's share, across transports
            assert over_http["data"] is None
            assert over_http["errors"][0]["extensions"]["code"] == "BAD_REQUEST"

            started = time.perf_counter()
            assert not (await bob.raw(FAST)).get("errors")  # another user is not held back
            assert time.perf_counter() - started < 1
        finally:
            await alice.ws.close()
        await asyncio.sleep(0.3)  # the closed socket's operations are cancelled: slots free
        assert not (await alice_http.raw(FAST)).get("errors")


async def test_the_waiting_operations_run_once_a_slot_frees(fair: Server) -> None:
    """A burst just over the limit is absorbed: the third query waits, then runs."""
    bearer = token(f"burst-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(timeout=30) as client:
        api = Api(client, fair.url, bearer)
        bodies = await asyncio.gather(*(api.raw(FAST) for _ in range(4)))
    assert all(not body.get("errors") for body in bodies), bodies


async def test_subscriptions_are_capped_per_user_across_sockets(fair: Server) -> None:
    bearer = token(f"views-{uuid.uuid4().hex[:6]}")
    first, second = await acked(fair.url, bearer), await acked(fair.url, bearer)
    other = await acked(fair.url, token(f"other-{uuid.uuid4().hex[:6]}"))
    try:
        await first.subscribe("a", MY_ORDERS)
        await first.subscribe("b", MY_ORDERS)
        await second.subscribe("c", MY_ORDERS)
        await no_error_so_far(first)
        await no_error_so_far(second)
        await second.subscribe("d", MY_ORDERS)
        message = await second.recv()
        assert message["type"] == "error" and message["id"] == "d", message
        assert message["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
        assert "per user" in message["payload"][0]["message"]
        await other.subscribe("x", MY_ORDERS)  # another user's count is its own
        await no_error_so_far(other)

        await first.send({"type": "complete", "id": "a"})
        await no_error_so_far(first)
        await asyncio.sleep(0.1)
        await second.subscribe("e", MY_ORDERS)
        await no_error_so_far(second)
        await first.ws.close()  # a closed socket's subscriptions no longer count
        await asyncio.sleep(0.3)
        await second.subscribe("f", MY_ORDERS)  # c, e, f
        await no_error_so_far(second)
        await second.subscribe("g", MY_ORDERS)
        assert (await second.recv())["id"] == "g"  # the error again: three is the most
    finally:
        for client in (first, second, other):
            await client.ws.close()


async def test_readyz_details_need_the_metrics_token(fair: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        deadline = time.monotonic() + 20
        while (anonymous := await client.get(fair.url + "/readyz")).status_code != 200:
            assert time.monotonic() < deadline, anonymous.text
            await asyncio.sleep(0.2)
        assert anonymous.json() == {"ready": True}
        wrong = await client.get(fair.url + "/readyz", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 200 and wrong.json() == {"ready": True}
        operator = await client.get(
            fair.url + "/readyz", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert operator.status_code == 200
        report = operator.json()
        assert report["ready"] is True and {"products", "orders"} <= set(report["projections"])
        assert "parked" in report["projections"]["products"]


async def test_readyz_without_a_metrics_token_configured_still_reports(users: Users) -> None:
    response = await users.client.get(users.url + "/readyz")
    assert "projections" in response.json()


async def test_parked_events_cannot_be_truncated(server: Server, server_database_url: str) -> None:
    """0004 refused UPDATE and DELETE of operators' parking records; TRUNCATE emptied them."""
    conn = await asyncpg.connect(server.read_url or server_database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE eventgraph.parked_events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE eventgraph.parked_events CASCADE")
    finally:
        await conn.close()


def forge(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_a_token_naming_an_audience_is_unauthenticated_when_none_is_configured(
    users: Users,
) -> None:
    claims = {"sub": "aud-holder", "role": "staff", "exp": int(time.time()) + 600}
    for aud in ["billing", ["billing", "shop"], ""]:
        body = await Api(users.client, users.url, forge({**claims, "aud": aud})).raw(FAST)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (aud, body)
        assert "audience" in body["errors"][0]["message"] or aud == ""
    assert not (await Api(users.client, users.url, forge(claims)).raw(FAST)).get("errors")


LOOK_ALIKES = ["alice\u200b", "alice ", " alice", "\u202eecila", "al\u2066ice", "ali\u00a0ce"]


async def test_look_alike_subjects_are_unauthenticated(users: Users) -> None:
    now = int(time.time())
    for sub in [*LOOK_ALIKES, "Zoe\u0308"]:  # the last: not NFC
        bearer = forge({"sub": sub, "role": "customer", "exp": now + 600})
        body = await Api(users.client, users.url, bearer).raw(FAST)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", (sub, body)
        client = await connect(users.url, bearer)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403, sub


def test_the_token_command_refuses_look_alike_subjects_and_normalises(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "eventgraph.cli", "token", "--role", "customer", "--sub"]
    for sub in LOOK_ALIKES:
        refused = subprocess.run([*command, sub], capture_output=True, text=True, env=env)
        assert refused.returncode == 2 and "invisible" in refused.stderr, (sub, refused)
        assert "Traceback" not in refused.stderr
    minted = subprocess.run([*command, "Zoe\u0308"], capture_output=True, text=True, env=env)
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "Zo\u00eb"
