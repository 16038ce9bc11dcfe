"""Order deadlines and low stock end to end, on a running server whose payment window is 2 s
and whose low-stock threshold is 3: an unpaid order expires by itself (pushed live, its stock
back, its payment refused, counted on the dashboard, seen by the feeds), a paid one never
does, a product going below the threshold is flagged once per crossing; with deadlines off
nothing expires; operators see both reactions (/readyz, `eventgraph projections`, /metrics);
a window that cannot be used stops the process; no client can expire or flag anything."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets

from tests.kit.database import fresh_database
from tests.kit.deadlines import (
    bearer_of,
    reactions_settled,
    readyz,
    sample,
    scrape,
    until,
    users_on,
)
from tests.kit.documents import RESTOCK, register, stream_events
from tests.kit.server import SECRET, Api, Server, Users, new_sku, start_server, stop_server, token
from tests.kit.ws import Client, acked, connect

WINDOW = timedelta(seconds=2)
THRESHOLD = 3
METRICS_TOKEN = "deadlines-" + uuid.uuid4().hex
REACTIONS = ("order-expiry", "low-stock")

ORDER_VIEW = "id status version position placedAt expiresAt total amountPaid"
PLACE = f"""mutation($lines: [OrderLineInput!]!) {{
  placeOrder(lines: $lines) {{ orderId position order {{ {ORDER_VIEW} }} }} }}"""
PAY = f"""mutation($id: ID!, $amount: Decimal!) {{
  payOrder(orderId: $id, amount: $amount) {{ position order {{ {ORDER_VIEW} }} }} }}"""
ORDER = f"query($id: ID!) {{ order(id: $id) {{ {ORDER_VIEW} }} }}"
PRODUCT_VIEW = "sku onHand reserved available position lowOnStock lowOnStockSince"
PRODUCT = f"query($sku: String!, $at: Position) {{ product(sku: $sku, atLeast: $at) {{ {PRODUCT_VIEW} }} }}"
DASHBOARD = (
    "query($at: Position) { salesDashboard(atLeast: $at) { ordersExpired ordersPaid position } }"
)
ORDER_SUB = f"subscription($id: ID!) {{ order(id: $id) {{ {ORDER_VIEW} }} }}"
PRODUCT_SUB = f"subscription($sku: String!) {{ product(sku: $sku) {{ {PRODUCT_VIEW} }} }}"
ORDERS_FEED = (
    "subscription($after: Position) { orders(after: $after) { id status expiresAt position } }"
)
MY_ORDERS_FEED = (
    "subscription($after: Position) { myOrders(after: $after) { id status expiresAt position } }"
)
LOW_STOCK_EVENTS = """query($stream: String!) {
  events(streamId: $stream, types: ["LowStockReached"], first: 100) { position type data metadata } }"""


@pytest.fixture(scope="module")
async def deadlines_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def deadlines(deadlines_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        deadlines_url,
        tmp_path_factory.mktemp("deadlines"),
        EVENTGRAPH_PAYMENT_WINDOW_SECONDS=str(int(WINDOW.total_seconds())),
        EVENTGRAPH_LOW_STOCK_THRESHOLD=str(THRESHOLD),
        EVENTGRAPH_METRICS_TOKEN=METRICS_TOKEN,
    )
    yield running
    stop_server(running)
    errors = [line for line in running.log.read_text().splitlines() if " ERROR " in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:20])


@pytest.fixture
async def users(deadlines: Server) -> AsyncIterator[Users]:
    async with users_on(deadlines) as signed_in:
        yield signed_in


def when(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


async def place(api: Api, lines: list[tuple[str, int]]) -> dict[str, Any]:
    data = await api.ok(PLACE, {"lines": [{"sku": s, "quantity": q} for s, q in lines]})
    placed: dict[str, Any] = data["placeOrder"]
    return placed


async def place_and_pay(api: Api, lines: list[tuple[str, int]]) -> dict[str, Any]:
    """An order paid right after it was placed, well inside its window."""
    placed = await place(api, lines)
    amount = placed["order"]["total"]
    paid = (await api.ok(PAY, {"id": placed["orderId"], "amount": amount}))["payOrder"]
    assert paid["order"]["status"] == "PAID" and paid["order"]["expiresAt"] is None
    return placed


async def views_until(client: Client, op_id: str, field: str, done: Any) -> list[dict[str, Any]]:
    """The views pushed on `op_id` up to the first for which `done(view)` holds."""
    seen: list[dict[str, Any]] = []
    while not seen or not done(seen[-1]):
        seen.append((await client.next_data(op_id, seconds=20))[field])
    return seen


async def release_of(users: Users, sku: str, order_id: str) -> dict[str, Any]:
    """The stock release of `order_id` on product `sku` (exactly one)."""
    releases = [
        e
        for e in await stream_events(users, f"product-{sku}")
        if e["type"] == "InventoryUpdated"
        and e["data"]["reason"] == "release"
        and e["data"]["orderId"] == order_id
    ]
    assert len(releases) == 1, releases
    return releases[0]


# Expiry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_an_unpaid_order_expires_live_its_stock_comes_back_and_it_cannot_be_paid(
    users: Users, protocol: str
) -> None:
    sku = new_sku()
    await register(users, sku, "2.50", 10)
    before = (await users.staff.ok(DASHBOARD))["salesDashboard"]["ordersExpired"]
    placed = await place(users.alice, [(sku, 2)])
    order = placed["order"]
    assert order["status"] == "PLACED"
    # The deadline is the server's: placedAt plus the window, to the microsecond it stores.
    assert abs(when(order["expiresAt"]) - when(order["placedAt"]) - WINDOW) < timedelta(
        milliseconds=1
    )
    paid = await place_and_pay(users.alice, [(sku, 1)])

    client = await acked(users.url, bearer_of(users.alice), protocol)
    await client.subscribe("o", ORDER_SUB, {"id": placed["orderId"]})
    seen = await views_until(client, "o", "order", lambda v: v["status"] != "PLACED")
    await client.ws.close()
    assert seen[0]["status"] == "PLACED" and seen[0]["expiresAt"] == order["expiresAt"]
    expired = seen[-1]
    assert expired["status"] == "EXPIRED" and expired["expiresAt"] is None
    assert expired["version"] == 2 and expired["amountPaid"] == "0.00"
    positions = [v["position"] for v in seen]
    assert positions == sorted(set(positions))

    [placed_event, expiry] = await stream_events(users, f"order-{placed['orderId']}")
    assert (placed_event["type"], expiry["type"]) == ("OrderPlaced", "OrderExpired")
    assert expiry["data"]["expiresAt"] == placed_event["data"]["expiresAt"]
    assert expiry["metadata"]["actor"] == {"id": "system:order-expiry", "role": "system"}
    assert when(expiry["occurredAt"]) >= when(order["expiresAt"]), "never before the deadline"

    # Its 2 units are back; the paid order's 1 stays reserved.
    release = await release_of(users, sku, placed["orderId"])
    assert release["data"]["quantity"] == 2
    product = (await users.alice.ok(PRODUCT, {"sku": sku, "at": release["position"]}))["product"]
    assert (product["onHand"], product["reserved"], product["available"]) == (10, 1, 9)

    assert await users.alice.error(PAY, {"id": placed["orderId"], "amount": "5.00"}) == (
        "INVALID_STATE"
    )
    dashboard = (await users.staff.ok(DASHBOARD, {"at": release["position"]}))["salesDashboard"]
    assert dashboard["ordersExpired"] == before + 1

    # The paid order's deadline passes too (a few milliseconds after the first's): it stays PAID.
    past = when(paid["order"]["expiresAt"]) + timedelta(milliseconds=500)
    await asyncio.sleep(max((past - datetime.now(past.tzinfo)).total_seconds(), 0))
    await reactions_settled(users.client, users.url, METRICS_TOKEN, "order-expiry")
    still = (await users.alice.ok(ORDER, {"id": paid["orderId"]}))["order"]
    assert still["status"] == "PAID" and still["expiresAt"] is None
    types = [e["type"] for e in await stream_events(users, f"order-{paid['orderId']}")]
    assert types == ["OrderPlaced", "PaymentProcessed"]


async def test_the_order_feeds_given_after_see_the_expiry(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    name = f"feed-{uuid.uuid4().hex[:6]}"
    customer = users.customer(name)
    placed = await place(customer, [(sku, 1)])
    order_id = placed["orderId"]

    # Staff, live: the feed from the placement's position pushes the order when it expires.
    staff = await acked(users.url, bearer_of(users.staff))
    await staff.subscribe("f", ORDERS_FEED, {"after": placed["position"]})
    seen = await views_until(
        staff, "f", "orders", lambda v: v["id"] == order_id and v["status"] == "EXPIRED"
    )
    await staff.ws.close()
    assert seen[-1]["expiresAt"] is None

    # The customer, back after being away: the feed given the last position they had seen
    # starts with the order's expired view.
    mine = await acked(users.url, token(name))
    await mine.subscribe("m", MY_ORDERS_FEED, {"after": placed["position"]})
    first = (await mine.next_data("m"))["myOrders"]
    await mine.ws.close()
    assert (first["id"], first["status"], first["expiresAt"]) == (order_id, "EXPIRED", None)
    assert first["position"] >= seen[-1]["position"]


# Low stock -----------------------------------------------------------------------------------


async def test_low_stock_is_flagged_live_once_per_crossing_and_a_restock_clears_it(
    users: Users,
) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    client = await acked(users.url, bearer_of(users.bob))
    await client.subscribe("p", PRODUCT_SUB, {"sku": sku})
    first = (await client.next_data("p"))["product"]
    assert (first["available"], first["lowOnStock"], first["lowOnStockSince"]) == (10, False, None)

    # Orders are paid at once: an expiry's release would move the stock under the test.
    await place_and_pay(users.alice, [(sku, 6)])  # 4 available: not below 3
    crossing = await place_and_pay(users.alice, [(sku, 2)])  # 2: below
    low = (await views_until(client, "p", "product", lambda v: v["lowOnStock"]))[-1]
    assert low["available"] == 2 and low["lowOnStockSince"] is not None
    assert when(low["lowOnStockSince"]) >= when(crossing["order"]["placedAt"])

    await place_and_pay(users.alice, [(sku, 1)])  # 1: still below, no new crossing
    restocked = (await users.staff.ok(RESTOCK, {"sku": sku, "q": 5}))["restockProduct"]
    back = (await views_until(client, "p", "product", lambda v: not v["lowOnStock"]))[-1]
    assert back["available"] == 6 and back["lowOnStockSince"] is None
    assert back["position"] >= restocked["position"]

    again = await place_and_pay(users.alice, [(sku, 4)])  # 2: the second crossing
    low_again = (await views_until(client, "p", "product", lambda v: v["lowOnStock"]))[-1]
    await client.ws.close()
    assert low_again["available"] == 2
    assert when(low_again["lowOnStockSince"]) > when(low["lowOnStockSince"])

    # Once the reaction has followed every move and fired every timer: one flag per crossing.
    await reactions_settled(users.client, users.url, METRICS_TOKEN, "low-stock")
    flags = (await users.staff.ok(LOW_STOCK_EVENTS, {"stream": f"product-{sku}"}))["events"]
    assert len(flags) == 2, flags
    assert crossing["position"] < flags[0]["position"] < restocked["position"]
    assert again["position"] < flags[1]["position"]
    assert [f["data"]["threshold"] for f in flags] == [THRESHOLD, THRESHOLD]
    assert all(f["data"]["available"] < THRESHOLD for f in flags)
    assert all(f["metadata"]["actor"]["role"] == "system" for f in flags)


# Deadlines off -------------------------------------------------------------------------------


@pytest.fixture
async def no_deadlines(server_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    async with fresh_database(server_url) as url:
        running = start_server(url, tmp_path, EVENTGRAPH_PAYMENT_WINDOW_SECONDS="0")
        try:
            yield running
        finally:
            stop_server(running)


async def test_with_the_window_at_zero_an_order_has_no_deadline_and_never_expires(
    no_deadlines: Server,
) -> None:
    async with users_on(no_deadlines) as users:
        sku = new_sku()
        await register(users, sku, "3.00", 5)
        placed = await place(users.alice, [(sku, 1)])
        assert placed["order"]["status"] == "PLACED" and placed["order"]["expiresAt"] is None
        # The reaction has read the placement and scheduled nothing for it; wait out more
        # than the other server's window as well.
        report = await reactions_settled(users.client, users.url, None, "order-expiry")
        assert report["order-expiry"]["timersPending"] == 0
        await asyncio.sleep(2 * WINDOW.total_seconds())
        report = await reactions_settled(users.client, users.url, None, "order-expiry")
        assert report["order-expiry"]["timersPending"] == 0
        assert report["order-expiry"]["status"] == "running"
        order = (await users.alice.ok(ORDER, {"id": placed["orderId"]}))["order"]
        assert order["status"] == "PLACED" and order["expiresAt"] is None
        assert [e["type"] for e in await stream_events(users, f"order-{placed['orderId']}")] == [
            "OrderPlaced"
        ]
        paid = await users.alice.ok(PAY, {"id": placed["orderId"], "amount": "3.00"})
        assert paid["payOrder"]["order"]["status"] == "PAID"


# Operations ----------------------------------------------------------------------------------


def projections_cli(
    server: Server, database_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EVENTGRAPH_"))}
    env["DATABASE_URL"] = database_url
    if server.read_url:
        env["EVENTGRAPH_READ_DATABASE_URL"] = server.read_url
    return subprocess.run(
        [sys.executable, "-m", "eventgraph.cli", "projections", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_operators_see_both_reactions_in_readyz_the_cli_and_the_metrics(
    users: Users, deadlines: Server, deadlines_url: str
) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", THRESHOLD)
    placed = await place(users.bob, [(sku, 1)])  # below the threshold; expires unpaid
    await until(
        lambda: _status_is(users.bob, placed["orderId"], "EXPIRED"), what="the order to expire"
    )

    reactions = await reactions_settled(users.client, users.url, METRICS_TOKEN, *REACTIONS)
    for name in REACTIONS:
        r = reactions[name]
        assert {"checkpoint", "lagEvents", "timersPending", "oldestOverdueSeconds"} <= r.keys()
        assert r["status"] == "running" and r["error"] is None
        assert r["checkpoint"] >= placed["position"] and r["timersPending"] == 0
    anonymous = await readyz(users.client, users.url, None)
    assert anonymous == {"ready": True}, "details only with the metrics token"

    shown = projections_cli(deadlines, deadlines_url, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert set(REACTIONS) <= set(report["reactions"])
    for name in REACTIONS:
        r = report["reactions"][name]
        assert r["checkpoint"] >= placed["position"] and r["lagEvents"] == 0
        assert (r["timersPending"], r["oldestOverdueSeconds"]) == (0, 0)
    text = projections_cli(deadlines, deadlines_url)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    for name in REACTIONS:
        assert any(line.split()[:2] == [name, "running"] for line in lines), text.stdout

    families, samples = await scrape(users.client, users.url, METRICS_TOKEN)
    assert families["eventgraph_timers_pending"] == "gauge"
    assert families["eventgraph_timers_oldest_overdue_seconds"] == "gauge"
    assert families["eventgraph_timers_fired"] == "counter"
    assert families["eventgraph_timers_failed"] == "counter"
    for name in REACTIONS:
        assert ("eventgraph_timers_pending", (("reaction", name),)) in samples
        assert ("eventgraph_timers_oldest_overdue_seconds", (("reaction", name),)) in samples
    fired = "eventgraph_timers_fired_total"
    assert sample(samples, fired, reaction="order-expiry", outcome="applied") >= 1
    assert sample(samples, fired, reaction="low-stock", outcome="applied") >= 1
    refused = await users.client.get(users.url + "/metrics")
    assert refused.status_code == 401


async def _status_is(api: Api, order_id: str, status: str) -> bool:
    order = (await api.ok(ORDER, {"id": order_id}))["order"]
    return bool(order["status"] == status)


# Settings ------------------------------------------------------------------------------------


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EVENTGRAPH_"))}
    env["EVENTGRAPH_DATA_DIR"] = str(data_dir)
    return env


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "-1"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "abc"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "1e12"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "nan"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "0.5"),
        ("EVENTGRAPH_LOW_STOCK_THRESHOLD", "2.5"),
        ("EVENTGRAPH_LOW_STOCK_THRESHOLD", "-3"),
        ("EVENTGRAPH_LOW_STOCK_THRESHOLD", "1000000001"),
    ],
)
@pytest.mark.parametrize("command", [["schema"], ["serve", "--port", "0"]], ids=["schema", "serve"])
def test_a_deadline_setting_that_cannot_be_used_stops_the_process_saying_which(
    tmp_path: Path, variable: str, value: str, command: list[str]
) -> None:
    # A database that cannot be reached: a setting let through would stop `serve` too, at
    # once, but with a line about the database instead (and no embedded one left running).
    env = clean_env(tmp_path) | {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}
    result = subprocess.run(
        [sys.executable, "-m", "eventgraph.cli", *command],
        env=env | {variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and not result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("eventgraph") and variable in line


# No client expires or flags ------------------------------------------------------------------


def forged(sub: str, role: str) -> str:
    """A token signed with the server's own secret, with claims `mint_token` refuses to sign."""
    now = int(time.time())
    claims = {"sub": sub, "role": role, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_no_client_can_expire_an_order_or_flag_low_stock(users: Users) -> None:
    fields = await users.staff.ok('{ __type(name: "Mutation") { fields { name } } }')
    names = [f["name"].lower() for f in fields["__type"]["fields"]]
    assert "placeorder" in names
    assert not [n for n in names if "expire" in n or "lowstock" in n or n.startswith("flag")]
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    placed = await place(users.alice, [(sku, 1)])
    for document in [
        "mutation($id: ID!) { expireOrder(orderId: $id) { orderId } }",
        "mutation($id: ID!) { flagLowStock(sku: $id, threshold: 5) { sku } }",
    ]:
        code = await users.staff.error(document, {"id": placed["orderId"]})
        assert code == "GRAPHQL_VALIDATION_FAILED"

    # A token claiming the system's role, or naming one of the reactions as its subject, is
    # no token, even signed with the server's own secret.
    for bearer in [
        forged("mallory", "system"),
        forged("system:order-expiry", "system"),
        forged("system:order-expiry", "staff"),
        forged("system:low-stock", "customer"),
    ]:
        impostor = Api(users.client, users.url, bearer)
        assert await impostor.error(ORDER, {"id": placed["orderId"]}) == "UNAUTHENTICATED"
        assert await impostor.error(PAY, {"id": placed["orderId"], "amount": "1.00"}) == (
            "UNAUTHENTICATED"
        )
        assert await impostor.error(RESTOCK, {"sku": sku, "q": 1}) == "UNAUTHENTICATED"
        socket = await connect(users.url, bearer)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403

    # Nothing they tried happened: no payment, no restock (the order expires by itself).
    events = await stream_events(users, f"order-{placed['orderId']}")
    assert {e["type"] for e in events} <= {"OrderPlaced", "OrderExpired"}
    moves = await stream_events(users, f"product-{sku}")
    assert not [
        e for e in moves if e["type"] == "InventoryUpdated" and e["data"]["reason"] == "restock"
    ]
    await until(
        lambda: _status_is(users.alice, placed["orderId"], "EXPIRED"), what="the order to expire"
    )
