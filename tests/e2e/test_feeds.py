"""Resumable feeds and session consistency, against the running server: `myOrders(after:)`
and `orders(after:)` send the current view of every order that changed after a position,
oldest change first, then go on live (across a reconnect and a server restart, for customers
and staff); `extensions.atLeast`, the `EventGraph-At-Least` header and
`extensions.position`; an unknown subprotocol is accepted, then closed with 4406."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.kit.documents import PAY, PLACE, place, register
from tests.kit.server import Server, Users, new_sku, start_server, stop_server
from tests.kit.ws import Client, acked

MY_FEED = "subscription($after: Position) { myOrders(after: $after) { id status position } }"
STAFF_FEED = (
    "subscription($after: Position) { orders(after: $after) { id customerId status position } }"
)
FAR = 2**50
"""A position no test's log reaches: waiting for it can only time out."""


async def views(client: Client, op_id: str, field: str, count: int) -> list[dict[str, Any]]:
    return [(await client.next_data(op_id))[field] for _ in range(count)]


async def quiet(client: Client, seconds: float = 0.6) -> None:
    """Nothing more arrives for `seconds`."""
    with pytest.raises(TimeoutError):
        message = await client.recv(seconds)
        pytest.fail(f"unexpected message: {message}")


def subject(api: Any) -> str:
    return str(api.headers["Authorization"].split()[1])


async def test_my_orders_after_sends_what_changed_since_oldest_change_first(users: Users) -> None:
    sku = new_sku()
    registered = await register(users, sku, "3.00", 100)
    first = await place(users.alice, [(sku, 1)])
    second = await place(users.alice, [(sku, 2)])
    await place(users.bob, [(sku, 1)])  # another customer's: never in alice's feed
    paid = (await users.alice.ok(PAY, {"id": first["orderId"], "amount": "3.00"}))["payOrder"]

    client = await acked(users.url, subject(users.alice))
    await client.subscribe("f", MY_FEED, {"after": registered["position"]})
    caught_up = await views(client, "f", "myOrders", 2)
    # oldest change first: the second order (placed) before the first (paid after it)
    assert [(v["id"], v["status"]) for v in caught_up] == [
        (second["orderId"], "PLACED"),
        (first["orderId"], "PAID"),
    ]
    assert caught_up[0]["position"] < caught_up[1]["position"]
    assert caught_up[1]["position"] >= paid["position"]
    await quiet(client)

    # then live, from where the catch-up ended
    third = await place(users.alice, [(sku, 1)])
    live = (await client.next_data("f"))["myOrders"]
    assert live["id"] == third["orderId"] and live["position"] > caught_up[1]["position"]

    # after the newest position seen: nothing again, then only what is new
    again = await acked(users.url, subject(users.alice))
    await again.subscribe("g", MY_FEED, {"after": live["position"]})
    await quiet(again)
    await users.alice.ok(PAY, {"id": second["orderId"], "amount": "6.00"})
    resumed = (await again.next_data("g"))["myOrders"]
    assert (resumed["id"], resumed["status"]) == (second["orderId"], "PAID")
    await client.ws.close()
    await again.ws.close()


async def test_a_feed_resumed_after_a_disconnect_misses_nothing(users: Users) -> None:
    """A staff feed and a customer's feed, disconnected while orders change, resumed with
    the last position each received: exactly the orders that changed while away, each once
    in its newest state, positions strictly increasing across the resume."""
    sku = new_sku()
    await register(users, sku, "1.00", 1_000)
    carol = users.customer()
    staff = await acked(users.url, subject(users.staff))
    mine = await acked(users.url, subject(carol))
    await staff.subscribe("s", STAFF_FEED)
    await mine.subscribe("m", MY_FEED)
    before = await place(carol, [(sku, 1)])
    last_staff = (await staff.next_data("s"))["orders"]
    while last_staff["id"] != before["orderId"]:  # other tests' orders may come first
        last_staff = (await staff.next_data("s"))["orders"]
    last_mine = (await mine.next_data("m"))["myOrders"]
    assert last_mine["id"] == before["orderId"]
    await staff.ws.close()
    await mine.ws.close()

    away = [await place(carol, [(sku, 1)]) for _ in range(5)]
    await carol.ok(PAY, {"id": away[0]["orderId"], "amount": "1.00"})
    expected = {o["orderId"] for o in away}

    staff = await acked(users.url, subject(users.staff))
    mine = await acked(users.url, subject(carol))
    await staff.subscribe("s", STAFF_FEED, {"after": last_staff["position"]})
    await mine.subscribe("m", MY_FEED, {"after": last_mine["position"]})
    got_mine = await views(mine, "m", "myOrders", 5)
    assert {v["id"] for v in got_mine} == expected
    assert [v["id"] for v in got_mine][-1] == away[0]["orderId"]  # its payment: the newest
    assert got_mine[-1]["status"] == "PAID"
    positions = [last_mine["position"]] + [v["position"] for v in got_mine]
    assert positions == sorted(set(positions)), "strictly increasing across the resume"
    await quiet(mine)

    seen: dict[str, dict[str, Any]] = {}
    staff_positions = [last_staff["position"]]
    while set(seen) < expected or seen[away[0]["orderId"]]["status"] != "PAID":
        view = (await staff.next_data("s"))["orders"]
        seen[view["id"]] = view
        staff_positions.append(view["position"])
    assert staff_positions == sorted(set(staff_positions))
    assert before["orderId"] not in seen, "a change before `after` is not sent again"
    await staff.ws.close()
    await mine.ws.close()


async def test_feeds_resume_across_a_server_restart(
    users: Users, server_database_url: str, tmp_path: Path
) -> None:
    """A server of its own is stopped (SIGTERM, then SIGKILL) while orders are placed through
    another on the same database; its clients resume with `after` once it is back."""
    sku = new_sku()
    await register(users, sku, "1.00", 1_000)
    dave = users.customer()
    own = start_server(server_database_url, tmp_path)
    port = int(own.url.rsplit(":", 1)[1])
    try:
        mine = await acked(own.url, subject(dave))
        staff = await acked(own.url, subject(users.staff))
        await mine.subscribe("m", MY_FEED)
        await staff.subscribe("s", STAFF_FEED)
        first = await place(dave, [(sku, 1)])
        last_mine = (await mine.next_data("m"))["myOrders"]
        last_staff = (await staff.next_data("s"))["orders"]
        while last_staff["id"] != first["orderId"]:
            last_staff = (await staff.next_data("s"))["orders"]

        placed: list[str] = []
        for stop in (signal.SIGTERM, signal.SIGKILL):
            own.process.send_signal(stop)
            own.process.wait(15)
            placed += [(await place(dave, [(sku, 1)]))["orderId"] for _ in range(3)]
            own = start_server(server_database_url, tmp_path, port=port)
            placed.append((await place(dave, [(sku, 1)]))["orderId"])
            mine = await acked(own.url, subject(dave))
            staff = await acked(own.url, subject(users.staff))
            await mine.subscribe("m", MY_FEED, {"after": last_mine["position"]})
            await staff.subscribe("s", STAFF_FEED, {"after": last_staff["position"]})
            got = await views(mine, "m", "myOrders", 4)
            assert [v["id"] for v in got] == placed[-4:]
            last_mine = got[-1]
            seen: set[str] = set()
            while not set(placed[-4:]) <= seen:
                view = (await staff.next_data("s"))["orders"]
                assert view["position"] > last_staff["position"]
                seen.add(view["id"])
                last_staff = view
    finally:
        stop_server(own)


async def test_feed_arguments_are_checked(users: Users) -> None:
    client = await acked(users.url, subject(users.alice))
    await client.subscribe("f", MY_FEED, {"after": -1})
    message = await client.recv()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    await client.subscribe("s", STAFF_FEED, {"after": 0})
    message = await client.recv()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    await client.ws.close()


# ---- session consistency


async def test_a_response_that_appended_carries_its_position(users: Users) -> None:
    sku = new_sku()
    body = await users.staff.raw(
        """mutation($sku: String!) {
             registerProduct(sku: $sku, name: "N", unitPrice: "1.00", initialStock: 5)
             { position } }""",
        {"sku": sku},
    )
    assert body["extensions"] == {"position": body["data"]["registerProduct"]["position"]}
    query = await users.staff.raw(
        "query($sku: String!) { product(sku: $sku) { sku } }", {"sku": sku}
    )
    assert "extensions" not in query
    refused = await users.alice.raw(PLACE, {"lines": [{"sku": sku, "quantity": 99}]})
    assert refused["errors"][0]["extensions"]["code"] == "INSUFFICIENT_STOCK"
    assert "extensions" not in refused, "nothing appended, no position"
    # two commands in one operation: the last position
    both = await users.staff.raw(
        """mutation($sku: String!) {
             a: restockProduct(sku: $sku, quantity: 1) { position }
             b: restockProduct(sku: $sku, quantity: 1) { position } }""",
        {"sku": sku},
    )
    assert both["extensions"]["position"] == both["data"]["b"]["position"]
    assert both["data"]["b"]["position"] > both["data"]["a"]["position"]


async def post(users: Users, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await users.client.post(
        users.url + "/graphql", json=body, headers={**users.staff.headers, **headers}
    )


async def test_session_at_least_makes_every_read_wait(users: Users) -> None:
    sku = new_sku()
    written = await register(users, sku, "1.00", 5)
    query = {"query": "query($sku: String!) { product(sku: $sku) { sku position } }"}
    query["variables"] = {"sku": sku}  # type: ignore[assignment]
    # reached: answered, and the view includes the write
    for extra, headers in (
        ({"extensions": {"atLeast": written["position"]}}, {}),
        ({}, {"EventGraph-At-Least": str(written["position"])}),
    ):
        answer = (await post(users, {**query, **extra}, **headers)).json()
        assert answer["data"]["product"]["position"] >= written["position"]
    # not reachable: every read waits, boundedly, then TIMEOUT (the larger of the two wins)
    for extra, headers in (
        ({"extensions": {"atLeast": FAR}}, {}),
        ({}, {"EventGraph-At-Least": str(FAR)}),
        ({"extensions": {"atLeast": 1}}, {"EventGraph-At-Least": str(FAR)}),
        ({"extensions": {"atLeast": str(FAR)}}, {"EventGraph-At-Least": "1"}),
    ):
        answer = (await post(users, {**query, **extra}, **headers)).json()
        assert answer["errors"][0]["extensions"]["code"] == "TIMEOUT", (extra, headers)
    # over GET, extensions is JSON text
    response = await users.client.get(
        users.url + "/graphql",
        params={
            "query": query["query"],
            "variables": json.dumps({"sku": sku}),
            "extensions": json.dumps({"atLeast": FAR}),
        },
        headers=users.staff.headers,
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "TIMEOUT"


@pytest.mark.parametrize(
    ("extra", "headers"),
    [
        ({"extensions": {"atLeast": -1}}, {}),
        ({"extensions": {"atLeast": 2**60}}, {}),
        ({"extensions": {"atLeast": "12a"}}, {}),
        ({"extensions": {"atLeast": True}}, {}),
        ({"extensions": {"atLeast": 1.5}}, {}),
        ({"extensions": ["atLeast"]}, {}),
        ({}, {"EventGraph-At-Least": "later"}),
        ({}, {"EventGraph-At-Least": "1e3"}),
        ({"extensions": {"atLeast": "٣"}}, {}),
        ({}, {"EventGraph-At-Least": "-3"}),
    ],
)
async def test_a_bad_session_position_is_refused_and_changes_nothing(
    users: Users, extra: dict[str, Any], headers: dict[str, str]
) -> None:
    sku = new_sku()
    mutation = """mutation($sku: String!) {
      registerProduct(sku: $sku, name: "N", unitPrice: "1.00") { position } }"""
    response = await post(users, {"query": mutation, "variables": {"sku": sku}, **extra}, **headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    missing = await users.staff.raw(
        "query($sku: String!) { product(sku: $sku) { sku } }", {"sku": sku}
    )
    assert missing["data"]["product"] is None


async def test_websocket_operations_honour_the_session_position(users: Users) -> None:
    sku = new_sku()
    client = await acked(users.url, subject(users.staff))
    mutation = """mutation($sku: String!) {
      registerProduct(sku: $sku, name: "N", unitPrice: "1.00", initialStock: 2) { position } }"""
    await client.subscribe("w", mutation, {"sku": sku})
    message = await client.recv()
    written = message["payload"]["data"]["registerProduct"]["position"]
    assert message["payload"]["extensions"] == {"position": written}
    assert (await client.recv())["type"] == "complete"

    for op_id, document in (
        ("q", "query($sku: String!) { product(sku: $sku) { sku } }"),
        ("p", "subscription($sku: String!) { product(sku: $sku) { sku } }"),
        ("f", "subscription { myOrders { id } }"),
    ):
        await client.send(
            {
                "type": "subscribe",
                "id": op_id,
                "payload": {
                    "query": document,
                    "variables": {"sku": sku},
                    "extensions": {"atLeast": FAR},
                },
            }
        )
        message = await client.recv(10)
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "TIMEOUT", (op_id, message)
        while message["type"] != "complete" and message["type"] != "error":
            message = await client.recv()

    # reached: the subscription answers with a view that includes the write
    await client.send(
        {
            "type": "subscribe",
            "id": "ok",
            "payload": {
                "query": "subscription($sku: String!) { product(sku: $sku) { sku position } }",
                "variables": {"sku": sku},
                "extensions": {"atLeast": written},
            },
        }
    )
    assert (await client.next_data("ok"))["product"]["position"] >= written

    # a bad position fails that operation alone: the socket and its views go on
    await client.send(
        {
            "type": "subscribe",
            "id": "bad",
            "payload": {"query": "{ __typename }", "extensions": {"atLeast": "soon"}},
        }
    )
    message = await client.recv()
    assert (message["type"], message["id"]) == ("error", "bad")
    assert message["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
    await users.staff.ok(
        "mutation($sku: String!) { restockProduct(sku: $sku, quantity: 1) { position } }",
        {"sku": sku},
    )
    assert (await client.next_data("ok"))["product"]["sku"] == sku
    await client.ws.close()


async def test_a_position_beyond_the_log_is_named_as_such(users: Users) -> None:
    client = await acked(users.url, subject(users.alice))
    await client.subscribe("f", MY_FEED, {"after": FAR})
    message = await client.recv()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "beyond the end of the event log" in errors[0]["message"]
    await client.ws.close()
    answer = await users.alice.raw(
        "query($sku: String!, $at: Position) { product(sku: $sku, atLeast: $at) { sku } }",
        {"sku": new_sku(), "at": FAR},
    )
    assert answer["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert "beyond the end of the event log" in answer["errors"][0]["message"]


async def test_an_orders_page_says_where_a_feed_starts(users: Users) -> None:
    """`orders { position }`: the read model's position for the page, even an empty one;
    a feed started after it gets every change since, and nothing from before."""
    sku = new_sku()
    await register(users, sku, "1.00", 100)
    erin = users.customer()
    empty = (await erin.ok("{ orders(first: 5) { edges { node { id } } position } }"))["orders"]
    assert empty["edges"] == [] and empty["position"] > 0
    early = await place(erin, [(sku, 1)])
    page = (await erin.ok("{ orders(first: 5) { edges { node { id position } } position } }"))[
        "orders"
    ]
    assert page["position"] >= page["edges"][0]["node"]["position"]
    later = await place(erin, [(sku, 2)])
    client = await acked(users.url, subject(erin))
    await client.subscribe("f", MY_FEED, {"after": page["position"]})
    assert (await client.next_data("f"))["myOrders"]["id"] == later["orderId"]
    await quiet(client)
    del early
    await client.ws.close()


# ---- the handshake


@pytest.mark.parametrize("offered", [["mqtt"], ["graphql-sse", "chat"], []])
async def test_an_unknown_subprotocol_is_accepted_then_closed_4406(
    server: Server, offered: list[str]
) -> None:
    async with websockets.connect(
        server.url.replace("http", "ws") + "/graphql",
        subprotocols=offered or None,  # type: ignore[arg-type]
    ) as ws:
        assert ws.subprotocol == (offered[0] if offered else None)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4406


async def test_a_refused_origin_is_still_refused_at_the_handshake(server: Server) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            server.url.replace("http", "ws") + "/graphql",
            subprotocols=["mqtt"],  # type: ignore[list-item]
            origin="https://evil.example",  # type: ignore[arg-type]
        )
    assert refused.value.response.status_code == 403
