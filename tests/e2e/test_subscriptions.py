"""Subscriptions over real WebSockets against the running server."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import websockets

from tests.kit.documents import PAY, RESTOCK, SHIP, place, register
from tests.kit.server import Users, new_sku, token
from tests.kit.ws import (
    DASHBOARD_SUB,
    EVENTS_SUB,
    MY_ORDERS,
    ORDER_SUB,
    PRODUCT_SUB,
    acked,
    connect,
)


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_product_subscription_gets_the_view_then_each_newer_one(
    users: Users, protocol: str
) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    staff = token("staff-sub", "staff")
    client = await acked(users.url, token("viewer"), protocol)
    await client.subscribe("p", PRODUCT_SUB, {"sku": sku})
    first = (await client.next_data("p"))["product"]
    assert (first["onHand"], first["reserved"]) == (10, 0)
    await place(users.alice, [(sku, 3)])
    await users.staff.ok(RESTOCK, {"sku": sku, "q": 5})
    seen = [first]
    while seen[-1]["onHand"] != 15:
        seen.append((await client.next_data("p"))["product"])
    positions = [v["position"] for v in seen]
    assert positions == sorted(set(positions)), "strictly increasing"
    assert seen[-1]["reserved"] == 3 and seen[-1]["available"] == 12
    await client.ws.close()
    del staff


async def test_order_subscription_follows_the_lifecycle_for_its_customer_only(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "2.00", 10)
    placed = await place(users.alice, [(sku, 1)])
    alice_token = users.alice.headers["Authorization"].split()[1]
    client = await acked(users.url, alice_token)
    await client.subscribe("o", ORDER_SUB, {"id": placed["orderId"]})
    assert (await client.next_data("o"))["order"]["status"] == "PLACED"
    await users.alice.ok(PAY, {"id": placed["orderId"], "amount": "2.00"})
    await users.staff.ok(SHIP, {"id": placed["orderId"]})
    statuses = []
    while not statuses or statuses[-1] != "SHIPPED":
        statuses.append((await client.next_data("o"))["order"]["status"])
    assert statuses[-1] == "SHIPPED" and "PLACED" not in statuses

    bob = await acked(users.url, users.bob.headers["Authorization"].split()[1])
    await bob.subscribe("o", ORDER_SUB, {"id": placed["orderId"]})
    message = await bob.recv()
    assert message["type"] in ("next", "error")
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_events_subscription_catches_up_then_goes_live_with_no_gap(users: Users) -> None:
    sku = new_sku()
    stream = f"product-{sku}"
    await register(users, sku, "1.00", 1000)
    for _ in range(3):
        await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})
    client = await acked(users.url, users.staff.headers["Authorization"].split()[1])
    await client.subscribe("e", EVENTS_SUB, {"after": 0, "stream": stream})

    async def writer() -> None:
        for _ in range(20):
            await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})

    writing = asyncio.create_task(writer())
    got = []
    while len(got) < 24:
        got.append((await client.next_data("e"))["events"])
    await writing
    assert [e["streamVersion"] for e in got] == list(range(1, 25))
    positions = [e["position"] for e in got]
    assert positions == sorted(set(positions))


async def test_protocol_rules_and_auth(users: Users) -> None:
    client = await connect(users.url, None)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd.code == 4403
    client = await connect(users.url, "not-a-token")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd.code == 4403

    ws = await websockets.connect(
        users.url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]
    )
    await ws.send(
        json.dumps(
            {
                "type": "subscribe",
                "id": "x",
                "payload": {"query": "subscription { myOrders { id } }"},
            }
        )
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 4401

    client = await acked(users.url, token("someone"))
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"
    await client.subscribe("a", MY_ORDERS)
    await client.subscribe("a", MY_ORDERS)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd.code == 4409

    client = await acked(users.url, token("someone"))
    await client.send({"type": "connection_init", "payload": {}})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd.code == 4429

    client = await acked(users.url, token("someone"))
    await client.ws.send("not json")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd.code == 4400

    client = await acked(users.url, token("someone"))
    await client.subscribe("d", DASHBOARD_SUB)
    message = await client.recv()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_my_orders_streams_changes_to_the_viewers_orders(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 100)
    customer = f"mine-{uuid.uuid4().hex[:6]}"
    me = users.customer(customer)
    client = await acked(users.url, token(customer))
    await client.subscribe("m", MY_ORDERS)
    await asyncio.sleep(0.3)
    placed = await place(me, [(sku, 1)])
    await place(users.bob, [(sku, 1)])  # not mine
    view = (await client.next_data("m"))["myOrders"]
    assert view["id"] == placed["orderId"] and view["status"] == "PLACED"


async def test_a_subscriber_on_one_server_sees_writes_made_through_another(
    users: Users, server_database_url: str, tmp_path: Any
) -> None:
    from tests.kit.server import Api, start_server, stop_server

    other = start_server(server_database_url, tmp_path)
    try:
        sku = new_sku()
        staff_other = Api(users.client, other.url, token("staff-other", "staff"))
        await staff_other.ok(
            'mutation($s: String!) { registerProduct(sku: $s, name: "x", unitPrice: "1.00", initialStock: 5) { position } }',
            {"s": sku},
        )
        client = await acked(users.url, token("watcher"))
        await client.subscribe("p", PRODUCT_SUB, {"sku": sku})
        assert (await client.next_data("p"))["product"]["onHand"] == 5
        await staff_other.ok(RESTOCK, {"sku": sku, "q": 4})
        assert (await client.next_data("p"))["product"]["onHand"] == 9
    finally:
        stop_server(other)


async def test_subscriptions_survive_the_database_killing_every_server_connection(
    users: Users, server_database_url: str
) -> None:
    import asyncpg

    sku = new_sku()
    await register(users, sku, "1.00", 100)
    client = await acked(users.url, token("survivor", "staff"))
    await client.subscribe("p", PRODUCT_SUB, {"sku": sku})
    await client.subscribe("e", EVENTS_SUB, {"after": 0, "stream": f"product-{sku}"})
    seen_events: list[dict[str, Any]] = []
    product: dict[str, Any] | None = None
    restocked = 0
    conn = await asyncpg.connect(server_database_url)
    try:
        for _round in range(3):
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for _ in range(10):  # the first commands may meet a dead pooled connection
                body = await users.staff.raw(RESTOCK, {"sku": sku, "q": 1})
                if not body.get("errors"):
                    restocked += 1
                    break
                assert body["errors"][0]["extensions"]["code"] == "UNAVAILABLE", body
                await asyncio.sleep(0.2)
        await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})
        restocked += 1
    finally:
        await conn.close()

    def settled() -> bool:
        return (
            product is not None
            and product["onHand"] >= 100 + restocked
            and product["onHand"] == 100 + len(seen_events) - 1
        )

    while not settled():
        message = await client.recv(15)
        assert message["type"] == "next", message
        data = message["payload"]["data"]
        if message["id"] == "p":
            product = data["product"]
        else:
            seen_events.append(data["events"])
    versions = [e["streamVersion"] for e in seen_events]
    assert versions == list(range(1, len(versions) + 1)), "nothing lost or repeated"
    assert product is not None and product["onHand"] == 100 + len(versions) - 1 >= 104


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_client_that_never_reads_does_not_slow_other_subscribers(
    users: Users, server: Any
) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    padding = "x" * 150  # bigger views fill the socket buffers sooner
    # A client that subscribes, then never reads: websockets stops reading the socket once
    # its queue of 1 is full, so the server's sends back up.
    stuck = await websockets.connect(
        users.url.replace("http", "ws") + "/graphql",
        subprotocols=["graphql-transport-ws"],
        max_queue=1,
        max_size=2**20,
    )
    await stuck.send(
        json.dumps(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {token('stuck')}"}}
        )
    )
    for i in range(20):
        await stuck.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": f"s{i}",
                    "payload": {
                        "query": "subscription($sku: String!) { product(sku: $sku) { sku name onHand position } }",
                        "variables": {"sku": sku},
                    },
                }
            )
        )
    watcher = await acked(users.url, token("watcher"))
    await watcher.subscribe("p", PRODUCT_SUB, {"sku": sku})
    await watcher.next_data("p")
    before = rss_kib(server.process.pid)
    for i in range(150):
        await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})
        if i % 50 == 49:  # the reading client keeps up all along
            view = (await watcher.next_data("p"))["product"]
            while view["onHand"] < 10 + i + 1:
                view = (await watcher.next_data("p"))["product"]
    grown = rss_kib(server.process.pid) - before
    # A loose sanity bound: the strict one is each subscriber's single slot (tests/unit).
    assert grown < 20_000, f"server grew by {grown} KiB for a client that never reads"
    await stuck.close()
    del padding


@pytest.mark.parametrize("fanout", ["postgres", "redis"])
async def test_two_servers_fan_out_through_broadcaster(
    users: Users, server_url: str, tmp_path: Any, fanout: str
) -> None:
    """The first server leads every projection; the second hears of their progress only
    through the fan-out (its own polling is slowed to a minute), so a read-your-writes query
    and a live view on it prove the broadcaster path."""
    from tests.integration.test_fanout import REDIS_URL, redis_available
    from tests.kit.database import fresh_database
    from tests.kit.server import Api, start_server, stop_server

    if fanout == "redis" and not redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    async with fresh_database(server_url) as database:
        url = REDIS_URL if fanout == "redis" else database
        env = {
            "EVENTGRAPH_BROADCAST_URL": url,
            "EVENTGRAPH_POSITION_POLL_SECONDS": "60",
            "EVENTGRAPH_READ_WAIT_SECONDS": "5",
        }
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        leader = start_server(database, tmp_path / "a", **env)
        follower = None
        try:
            follower = start_server(database, tmp_path / "b", **env)
            staff_a = Api(users.client, leader.url, token("staff-a", "staff"))
            staff_b = Api(users.client, follower.url, token("staff-b", "staff"))
            sku = new_sku()
            registered = await staff_a.ok(
                'mutation($s: String!) { registerProduct(sku: $s, name: "x", unitPrice: "1.00", initialStock: 5) { position } }',
                {"s": sku},
            )
            found = await staff_b.ok(
                "query($s: String!, $at: Position) { product(sku: $s, atLeast: $at) { onHand } }",
                {"s": sku, "at": registered["registerProduct"]["position"]},
            )
            assert found["product"]["onHand"] == 5
            client = await acked(follower.url, token("watcher-b"))
            await client.subscribe("p", PRODUCT_SUB, {"sku": sku})
            assert (await client.next_data("p"))["product"]["onHand"] == 5
            await staff_b.ok(RESTOCK, {"sku": sku, "q": 2})
            assert (await client.next_data("p"))["product"]["onHand"] == 7
        finally:
            for s in (follower, leader):
                if s is not None:
                    stop_server(s)


async def test_sigterm_closes_sockets_for_clients_to_reconnect_and_exits_promptly(
    users: Users, server_database_url: str, tmp_path: Any
) -> None:
    import signal
    import time

    from tests.kit.server import start_server

    sku = new_sku()
    await register(users, sku, "1.00", 5)
    other = start_server(server_database_url, tmp_path)
    client = await acked(other.url, token("leaving"))
    await client.subscribe("p", PRODUCT_SUB, {"sku": sku})
    await client.subscribe("m", MY_ORDERS)
    await client.next_data("p")
    started = time.monotonic()
    other.process.send_signal(signal.SIGTERM)
    completed = set()
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            message = await client.recv(10)
            if message["type"] == "complete":
                completed.add(message["id"])
    # not completed: the views go on once the client has reconnected (1012: service restart)
    assert completed == set()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    other.process.wait(15)
    assert time.monotonic() - started < 12
    assert other.process.returncode is not None


async def test_an_expiring_token_closes_the_connection(users: Users) -> None:
    from application.auth import mint_token
    from tests.kit.server import SECRET

    short = mint_token(SECRET, "brief", "customer", ttl_seconds=2)
    client = await acked(users.url, short)
    await client.subscribe("m", MY_ORDERS)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await client.recv(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_connection_has_a_cap_on_open_subscriptions(users: Users) -> None:
    from transport.ws import MAX_SUBSCRIPTIONS

    client = await acked(users.url, token("greedy"))
    for i in range(MAX_SUBSCRIPTIONS):
        await client.subscribe(f"s{i}", MY_ORDERS)
    await client.subscribe("one-too-many", MY_ORDERS)
    message = await client.recv()
    assert message["type"] == "error" and message["id"] == "one-too-many"
    assert message["payload"][0]["extensions"]["code"] == "BAD_REQUEST"
    await client.send({"type": "complete", "id": "s0"})
    await client.subscribe("fits-now", MY_ORDERS)
    await client.send({"type": "ping"})
    assert (await client.recv())["type"] == "pong"  # no error came for "fits-now"


async def test_identical_subscriptions_share_views_and_leave_independently(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    first = await acked(users.url, token("twin-1"))
    second = await acked(users.url, token("twin-2"))
    await first.subscribe("a", PRODUCT_SUB, {"sku": sku})
    await second.subscribe("b", PRODUCT_SUB, {"sku": sku})
    assert await first.next_data("a") == await second.next_data("b")
    await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})
    assert await first.next_data("a") == await second.next_data("b")
    await first.ws.close()
    await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})
    assert (await second.next_data("b"))["product"]["onHand"] == 12
    late = await acked(users.url, token("twin-3"))
    await late.subscribe("c", PRODUCT_SUB, {"sku": sku})
    assert (await late.next_data("c"))["product"]["onHand"] == 12  # the current view first


async def test_sales_dashboard_subscription_for_staff(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    client = await acked(users.url, token("boss", "staff"))
    await client.subscribe("d", DASHBOARD_SUB)
    first = (await client.next_data("d"))["salesDashboard"]
    placed = await place(users.alice, [(sku, 1)])
    view = first
    while view["position"] < placed["position"]:
        view = (await client.next_data("d"))["salesDashboard"]
        assert view["position"] > first["position"]
    assert view["ordersPlaced"] >= first["ordersPlaced"] + 1


async def test_events_subscription_under_several_concurrent_writers_is_exactly_the_log(
    users: Users,
) -> None:
    skus = [new_sku() for _ in range(4)]
    for sku in skus:
        await register(users, sku, "1.00", 1000)
    start = await users.staff.ok("query { events(first: 1, after: 0) { position } }")
    del start
    head = (await users.staff.ok(RESTOCK, {"sku": skus[0], "q": 1}))["restockProduct"]["position"]
    client = await acked(users.url, users.staff.headers["Authorization"].split()[1])
    await client.subscribe("e", EVENTS_SUB, {"after": head, "stream": None})

    async def writer(sku: str) -> None:
        for _ in range(15):
            await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})

    await asyncio.gather(*(writer(s) for s in skus))
    log = (
        await users.staff.ok(
            "query($after: Position) { events(after: $after, first: 1000) { position eventId } }",
            {"after": head},
        )
    )["events"]
    got = []
    while len(got) < len(log):
        got.append((await client.next_data("e"))["events"]["position"])
    assert got == [e["position"] for e in log] and len(got) >= 60
