"""What an attacker might send, against the running server: every refusal is a clean, typed
error (never a 500, an INTERNAL_SERVER_ERROR or the database's own words) and changes nothing.
The shared server's fixture also fails the run if the server logged an error meanwhile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets

from tests.kit.documents import CANCEL, PAY, PLACE, REGISTER, place, register, stream_events
from tests.kit.server import SECRET, Api, Server, Users, new_sku, start_server, stop_server, token
from tests.kit.ws import acked, connect

NUL = "\x00"


async def test_nul_and_control_characters_are_bad_input_wherever_they_go(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    order_id = (await place(users.alice, [(sku, 1)]))["orderId"]
    staff, alice = users.staff, users.alice
    cases: list[tuple[Api, str, dict[str, Any]]] = [
        (staff, REGISTER, {"sku": "A" + NUL, "name": "x", "price": "1.00", "stock": 1}),
        (staff, REGISTER, {"sku": new_sku(), "name": "x" + NUL, "price": "1.00", "stock": 1}),
        (staff, REGISTER, {"sku": new_sku(), "name": "x\x9b", "price": "1.00", "stock": 1}),
        (alice, PLACE, {"lines": [{"sku": sku + NUL, "quantity": 1}]}),
        (alice, PLACE, {"lines": [{"sku": sku, "quantity": 1}], "key": "k" + NUL}),
        (alice, PAY, {"id": order_id + NUL, "amount": "1.00"}),
        (alice, CANCEL, {"id": order_id, "reason": "no" + NUL}),
        (alice, "query($id: ID!) { order(id: $id) { id } }", {"id": NUL}),
        (alice, "query($s: String!) { product(sku: $s) { sku } }", {"s": NUL}),
        (staff, "query($c: String) { orders(customerId: $c) { edges { cursor } } }", {"c": NUL}),
        (staff, "query($s: String) { events(streamId: $s) { position } }", {"s": "s" + NUL}),
        (staff, "query($t: [String!]) { events(types: $t) { position } }", {"t": ["A" + NUL]}),
        (staff, "query($a: Position) { events(after: $a) { position } }", {"a": "1" + NUL}),
    ]
    for api, query, variables in cases:
        body = await api.raw(query, variables)
        codes = {e["extensions"]["code"] for e in body.get("errors", [])}
        assert codes == {"BAD_USER_INPUT"}, (variables, body)
        assert "byte sequence" not in str(body) and "0x00" not in str(body)
    assert [e["type"] for e in await stream_events(users, f"product-{sku}")] == [
        "ProductRegistered",
        "InventoryUpdated",
    ], "nothing was appended"


async def test_lone_surrogates_never_reach_the_database(users: Users) -> None:
    raw = (
        '{"query": "mutation($n: String!) { registerProduct(sku: \\"S-1\\", name: $n,'
        ' unitPrice: \\"1.00\\") { sku } }", "variables": {"n": "a\\ud800b"}}'
    )
    for method in ("POST", "GET"):
        if method == "POST":
            response = await users.client.post(
                users.url + "/graphql", content=raw, headers=users.staff.headers
            )
        else:
            response = await users.client.get(
                users.url + "/graphql",
                params={"query": "query($s: String!) { product(sku: $s) { sku } }",
                        "variables": '{"s": "\\udc00"}'},
                headers=users.staff.headers,
            )  # fmt: skip
        assert response.status_code in (200, 400), response.text
        assert "INTERNAL" not in response.text


def forge(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_tokens_with_a_nul_or_an_absurd_expiry_are_unauthenticated(users: Users) -> None:
    now = int(time.time())
    for claims in [
        {"sub": "mallory" + NUL, "role": "staff", "exp": now + 600},
        {"sub": "mallory", "role": "staff", "exp": 10**30},
        {"sub": "mallory", "role": "staff", "exp": str(now + 600)},
        {"sub": "mallory", "role": "staff", "exp": now + 90 * 86400},
    ]:
        api = Api(users.client, users.url, forge(claims))
        body = await api.raw("{ salesDashboard { ordersPlaced } }")
        assert {e["extensions"]["code"] for e in body["errors"]} == {"UNAUTHENTICATED"}, claims
        assert "byte sequence" not in str(body)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            client = await connect(users.url, forge(claims))
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.parametrize("number", ["\u0661\u0662", "1_0", "1e2", "9" * 5000, "0x10"])
async def test_only_ascii_digits_make_money_or_a_position(users: Users, number: str) -> None:
    sku = new_sku()
    price = {"sku": sku, "name": "x", "price": number, "stock": 1}
    assert await users.staff.error(REGISTER, price) == "BAD_USER_INPUT"
    at = 'query($a: Position) { product(sku: "X", atLeast: $a) { sku } }'
    assert await users.alice.error(at, {"a": number}) == "BAD_USER_INPUT"
    assert await users.alice.error(PAY, {"id": str(uuid.uuid4()), "amount": number}) in (
        "BAD_USER_INPUT"
    )


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_deeply_nested_variables_are_a_bad_request_not_a_crash(users: Users) -> None:
    query = "query($v: [String!]) { events(types: $v) { position } }"
    for depth in (30, 900, 5000, 100_000):
        body = '{"query": "' + query + '", "variables": {"v": ' + nested(depth) + "}}"
        response = await users.client.post(
            users.url + "/graphql", content=body, headers=users.staff.headers
        )
        assert response.status_code == 400, (depth, response.status_code)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
        if depth > 5000:
            continue  # beyond what a URL carries
        response = await users.client.get(
            users.url + "/graphql",
            params={"query": query, "variables": '{"v": ' + nested(depth) + "}"},
            headers=users.staff.headers,
        )
        assert response.status_code == 400, (depth, response.status_code)


async def test_a_costly_document_is_refused_cheaply_and_health_stays_quick(users: Users) -> None:
    def costly(i: int) -> str:  # distinct texts, so that no cache helps
        return "{ products { edges { " + f"n{i}: cursor " + "node { sku name } " * 300 + "} } }"

    body = await users.anonymous.raw(costly(0))
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "too costly" in body["errors"][0]["message"]

    async def health() -> float:
        started = time.perf_counter()
        response = await users.client.get(users.url + "/healthz")
        assert response.status_code == 200
        return time.perf_counter() - started

    attack = [users.anonymous.raw(costly(i)) for i in range(1, 9)]
    results = await asyncio.gather(*attack, health())
    assert results[-1] < 1.5, "four such requests used to stall /healthz for seconds"


async def test_an_idempotency_key_reused_for_something_else_is_a_conflict(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    customer = users.customer()
    key = str(uuid.uuid4())
    first = await place(customer, [(sku, 1)], key)
    again = await place(customer, [(sku, 1)], key)
    assert again["orderId"] == first["orderId"] and again["position"] == first["position"]
    other_lines = {"lines": [{"sku": sku, "quantity": 2}], "key": key}
    assert await customer.error(PLACE, other_lines) == "CONFLICT"
    pay_same_key = {"id": first["orderId"], "amount": "1.00", "key": key}
    assert await customer.error(PAY, pay_same_key) == "CONFLICT"
    stock = await stream_events(users, f"product-{sku}")
    assert len(stock) == 2, "one registration, one reservation: the conflicts appended nothing"
    # The same key from another customer is theirs alone.
    assert (await place(users.customer(), [(sku, 1)], key))["orderId"] != first["orderId"]


@pytest.mark.parametrize("sub", ["Zoë Ünal", "ann smith", "用户-7", "x" * 200])
async def test_any_valid_caller_can_use_idempotency_keys(users: Users, sub: str) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    customer = Api(users.client, users.url, token(f"{sub[:180]}{uuid.uuid4().hex[:8]}"[-200:]))
    key = "retry-" + uuid.uuid4().hex
    first = await place(customer, [(sku, 2)], key)
    assert (await place(customer, [(sku, 2)], key))["orderId"] == first["orderId"]
    paid = await customer.ok(PAY, {"id": first["orderId"], "amount": "2.00", "key": key + "p"})
    assert paid["payOrder"]["order"]["status"] == "PAID"


async def test_binary_and_oversized_frames_close_the_socket(users: Users) -> None:
    client = await acked(users.url, token("frames"))
    await client.ws.send(b"\x00\x01binary")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400

    ws = await websockets.connect(
        users.url.replace("http", "ws") + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        max_size=None,
    )
    await ws.send("x" * (1024 * 1024))  # before connection_init: never buffered whole
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.fixture(scope="module")
def strict_server(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        server_database_url,
        tmp_path_factory.mktemp("strict"),
        EVENTGRAPH_MAX_CONNECTIONS_PER_USER="2",
        EVENTGRAPH_JWT_AUDIENCE="eventgraph-shop",
        EVENTGRAPH_JWT_ISSUER="https://idp.example",
    )
    yield running
    stop_server(running)


def strict_token(sub: str, **claims: Any) -> str:
    base = {"sub": sub, "role": "customer", "exp": int(time.time()) + 600}
    return forge({**base, **claims})


async def test_audience_and_issuer_are_required_when_configured(strict_server: Server) -> None:
    query = "{ products { edges { cursor } } }"
    async with httpx.AsyncClient() as client:
        for claims, expected in [
            ({}, "UNAUTHENTICATED"),
            ({"aud": "eventgraph-shop"}, "UNAUTHENTICATED"),
            ({"aud": "other", "iss": "https://idp.example"}, "UNAUTHENTICATED"),
            ({"aud": "eventgraph-shop", "iss": "https://idp.example"}, None),
        ]:
            api = Api(client, strict_server.url, strict_token("aud-user", **claims))
            body = await api.raw(query)
            codes = {e["extensions"]["code"] for e in body.get("errors", [])}
            assert codes == ({expected} if expected else set()), (claims, body)


async def test_connections_per_user_are_capped(strict_server: Server) -> None:
    bearer = strict_token("many", aud="eventgraph-shop", iss="https://idp.example")
    first = await acked(strict_server.url, bearer)
    second = await acked(strict_server.url, bearer)
    third = await connect(strict_server.url, bearer)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await third.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    other = strict_token("someone-else", aud="eventgraph-shop", iss="https://idp.example")
    await (await acked(strict_server.url, other)).ws.close()
    await first.ws.close()
    await asyncio.sleep(0.2)
    again = await acked(strict_server.url, bearer)  # a slot freed
    await again.ws.close()
    await second.ws.close()


def test_a_short_jwt_secret_is_refused_at_start(tmp_path: Path) -> None:
    for command in (["serve", "--port", "1"], ["token", "--sub", "a", "--role", "staff"]):
        result = subprocess.run(
            [sys.executable, "-m", "eventgraph.cli", *command],
            env={"PATH": "/usr/bin:/bin", "EVENTGRAPH_JWT_SECRET": "short-secret",
                 "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
                 "EVENTGRAPH_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "at least 32 bytes" in result.stderr


async def test_duplicates_sent_at_once_get_the_first_result_even_when_stock_runs_out(
    users: Users,
) -> None:
    """Found by the model-based test: the second of two simultaneous duplicates was decided
    on the stock the first had just reserved, and answered INSUFFICIENT_STOCK."""
    sku = new_sku()
    await register(users, sku, "1.00", 3)
    customer = users.customer()
    key = str(uuid.uuid4())
    variables = {"lines": [{"sku": sku, "quantity": 3}], "key": key}
    bodies = await asyncio.gather(*(customer.raw(PLACE, variables) for _ in range(6)))
    assert all(not b.get("errors") for b in bodies), [b.get("errors") for b in bodies]
    assert len({b["data"]["placeOrder"]["orderId"] for b in bodies}) == 1
    assert len(await stream_events(users, f"product-{sku}")) == 2


async def test_an_empty_idempotency_key_is_bad_input_not_silently_no_key(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 3)
    variables = {"lines": [{"sku": sku, "quantity": 1}], "key": ""}
    assert await users.alice.error(PLACE, variables) == "BAD_USER_INPUT"
    assert len(await stream_events(users, f"product-{sku}")) == 1
