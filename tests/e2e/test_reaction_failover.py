"""Order expiry survives its leader: two `eventgraph serve` processes on one database, the
leader of the order-expiry reaction SIGKILLed while 1,000 deadlines are coming due, and the
standby fires the rest, every one exactly once; and deadlines that passed while no server
ran are kept as soon as one starts.

The orders are placed by the test itself, through the shop's command path on the same
database (as tests/integration/test_reactions.py does), so that 1,000 placements take a
second or two rather than 1,000 HTTP round trips."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from application.commands import Policy
from application.orders import PlaceOrder
from application.products import RegisterProduct
from application.shop import Shop
from domain.values import Actor
from eventgraph.runtime import open_runtime
from tests.kit.database import fresh_database
from tests.kit.deadlines import (
    reaction_connections,
    reaction_leader,
    sample,
    scrape,
    until,
    users_on,
)
from tests.kit.server import Server, start_server, stop_server

STAFF = Actor("failover-staff", "staff")
ORDERS = 1_000
PRODUCTS = 20
WINDOW = timedelta(seconds=8)
"""Long enough for 1,000 placements (a second or two here) to end before the deadline."""
EXPIRY = "order-expiry"

Line = tuple[str, str, int]
"""(order id, sku, quantity)"""


@pytest.fixture
async def shared_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


def lines_of(i: int, skus: list[str]) -> list[tuple[str, int]]:
    """Order i's lines: one or two, on products that many other orders share."""
    first = (skus[i % PRODUCTS], 1 + i % 3)
    return [first, (skus[(i + 7) % PRODUCTS], 1)] if i % 2 else [first]


async def place_orders(
    url: str, count: int, window: timedelta, clock: Callable[[], datetime] | None = None
) -> tuple[list[str], list[Line], list[datetime]]:
    """`count` orders by the test's own shop (no projectors, no reactions), each with the
    payment `window`: their ids, their lines, their deadlines."""
    policy = Policy(payment_window=window, low_stock_threshold=0)
    skus = [f"FAIL-{i:02d}" for i in range(PRODUCTS)]
    async with open_runtime(
        url, run_projectors=False, max_pool=8, policy=policy, clock=clock
    ) as runtime:
        shop = runtime.shop
        assert isinstance(shop, Shop)
        for sku in skus:
            await shop.handle(RegisterProduct(STAFF, sku, sku, "1.00", 10 * count))
        gate = asyncio.Semaphore(8)

        async def place(i: int) -> tuple[str, list[Line], datetime]:
            async with gate:
                customer = Actor(f"buyer-{i % 50}", "customer")
                result = await shop.handle(PlaceOrder(customer, lines_of(i, skus)))
            order = result.state
            assert order.expires_at is not None
            order_id = str(order.order_id)
            lines = [(order_id, line.sku, line.quantity) for line in order.lines]
            return order_id, lines, order.expires_at

        placed = await asyncio.gather(*(place(i) for i in range(count)))
    return (
        [order_id for order_id, _, _ in placed],
        [line for _, lines, _ in placed for line in lines],
        [deadline for _, _, deadline in placed],
    )


async def expiries(conn: asyncpg.Connection) -> dict[str, int]:
    """OrderExpired events by order stream."""
    rows = await conn.fetch(
        "SELECT stream_id, count(*) AS n FROM eventgraph.events WHERE type = 'OrderExpired'"
        " GROUP BY stream_id"
    )
    return {r["stream_id"]: r["n"] for r in rows}


async def expired_count(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM eventgraph.events WHERE type = 'OrderExpired'")
    )


async def timers(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM eventgraph.timers WHERE reaction = $1", EXPIRY)
    )


async def releases(conn: asyncpg.Connection) -> dict[tuple[str, str], list[int]]:
    """The quantities released, by (order id, sku)."""
    rows = await conn.fetch(
        "SELECT data->>'orderId' AS order_id, data->>'sku' AS sku,"
        " array_agg((data->>'quantity')::int) AS quantities FROM eventgraph.events"
        " WHERE type = 'InventoryUpdated' AND data->>'reason' = 'release' GROUP BY 1, 2"
    )
    return {(r["order_id"], r["sku"]): list(r["quantities"]) for r in rows}


async def quiet(conn: asyncpg.Connection) -> bool:
    """No statement of another connection is running, twice in a row, but those waiting for
    their client (the rest of a message, or room to send a result): a stopped process's
    statements in flight have finished, and committed if they were to; those waiting for it
    can only fail once it is killed."""
    for _ in range(2):
        running = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND state = 'active' AND wait_event_type IS DISTINCT FROM 'Client'"
        )
        if running:
            return False
        await asyncio.sleep(0.05)
    return True


def eq(get: Callable[[], Awaitable[Any]], expected: object) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await get() == expected)

    return check


async def order_statuses(reads: asyncpg.Connection) -> dict[str, str]:
    rows = await reads.fetch("SELECT order_id, status FROM readmodel.orders")
    return {r["order_id"]: r["status"] for r in rows}


async def product_stock(reads: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    rows = await reads.fetch("SELECT sku, on_hand, reserved FROM readmodel.products")
    return {r["sku"]: (r["on_hand"], r["reserved"]) for r in rows}


@asynccontextmanager
async def read_side(server: Server, conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `server`'s read models: `conn` unless it has a database of its own."""
    if server.read_url is None:
        yield conn
        return
    reads = await asyncpg.connect(server.read_url)
    try:
        yield reads
    finally:
        await reads.close()


def errors_logged(server: Server) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if " ERROR " in line]


async def test_a_thousand_timers_due_while_the_leader_is_killed_fire_exactly_once_on_the_standby(
    shared_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(shared_url)
    servers: list[Server] = []
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = start_server(shared_url, tmp_path / "a")
        servers.append(a)
        leader = await until(lambda: reaction_leader(conn, EXPIRY), what="server A to lead")
        b = start_server(shared_url, tmp_path / "b")
        servers.append(b)
        await until(eq(lambda: reaction_connections(conn, EXPIRY), 2), what="B to stand by")
        assert await reaction_leader(conn, EXPIRY) == leader, "A still leads"

        # Every order is placed at the same instant of the shop's clock, so all 1,000
        # deadlines fall at one instant, which the test waits for.
        placed_at = datetime.now(UTC)
        order_ids, lines, deadlines = await place_orders(
            shared_url, ORDERS, WINDOW, clock=lambda: placed_at
        )
        deadline = placed_at + WINDOW
        assert set(deadlines) == {deadline}
        assert datetime.now(UTC) < deadline, "placing took longer than the window"
        head = await conn.fetchval("SELECT max(position) FROM eventgraph.events")
        await until(lambda: _followed(conn, head), what="A to schedule every deadline")

        # A starts firing (a batch of timers at a time, each batch deleted once all its
        # commands are done); once a quarter of the orders have expired, A is stopped, its
        # statements in flight finish, and it is SIGKILLed: what it committed stays, the rest
        # is lost, and some timers whose orders did expire are still there.
        await asyncio.sleep(max((deadline - datetime.now(UTC)).total_seconds() - 0.2, 0))
        while await expired_count(conn) < ORDERS // 4:
            await asyncio.sleep(0.005)
        os.kill(a.process.pid, signal.SIGSTOP)
        await until(lambda: quiet(conn), what="A's statements in flight to end")
        by_a, left = await expired_count(conn), await timers(conn)
        a.process.kill()
        a.process.wait()
        assert 0 < by_a < ORDERS, f"A expired {by_a} of {ORDERS} before it was killed"

        # B takes the lead and fires the rest.
        await until(
            lambda: _new_leader(conn, leader), what="B to take over the reaction", seconds=30
        )
        await until(eq(lambda: timers(conn), 0), what="every timer to be done", seconds=60)
        await until(eq(lambda: expired_count(conn), ORDERS), what="every order to expire")

        assert await expiries(conn) == {f"order-{o}": 1 for o in order_ids}
        expected = {(o, sku): [quantity] for o, sku, quantity in lines}
        assert await releases(conn) == expected
        async with read_side(b, conn) as reads:
            await until(
                eq(lambda: order_statuses(reads), dict.fromkeys(order_ids, "EXPIRED")),
                what="the orders read model to show every order EXPIRED",
            )
            stock = await product_stock(reads)
        assert set(stock.values()) == {(10 * ORDERS, 0)}, "all stock is back"

        async with users_on(b) as users:
            _, samples = await scrape(users.client, b.url, None)
        fired = "eventgraph_timers_fired_total"
        applied = sample(samples, fired, reaction=EXPIRY, outcome="applied")
        assert applied == ORDERS - by_a, (
            f"B applied {applied}; A had expired {by_a} and left {left} timers",
            {k: v for k, v in samples.items() if k[0] == fired},
        )
        assert not errors_logged(b), errors_logged(b)
    finally:
        await conn.close()
        for server in servers:
            if server.process.poll() is None and server is servers[0]:
                server.process.kill()
            stop_server(server)


async def _followed(conn: asyncpg.Connection, head: int) -> bool:
    """The order-expiry reaction has reacted to the log up to `head`."""
    checkpoint = await conn.fetchval(
        "SELECT position FROM eventgraph.reactions WHERE name = $1", EXPIRY
    )
    return checkpoint is not None and checkpoint >= head


async def _new_leader(conn: asyncpg.Connection, old: int) -> bool:
    now = await reaction_leader(conn, EXPIRY)
    return now is not None and now != old


async def test_deadlines_that_passed_while_no_server_ran_are_kept_when_one_starts(
    shared_url: str, tmp_path: Path
) -> None:
    order_ids, lines, deadlines = await place_orders(shared_url, 20, timedelta(seconds=1))
    # Down for a while: every deadline passes with no process running.
    await asyncio.sleep(max((max(deadlines) - datetime.now(UTC)).total_seconds(), 0) + 1)
    conn = await asyncpg.connect(shared_url)
    try:
        assert await expired_count(conn) == 0 and await timers(conn) == 0
        server = start_server(shared_url, tmp_path)
        try:
            await until(eq(lambda: expired_count(conn), 20), what="the orders to expire")
            await until(eq(lambda: timers(conn), 0), what="every timer to be done")
            assert await expiries(conn) == {f"order-{o}": 1 for o in order_ids}
            assert await releases(conn) == {(o, sku): [q] for o, sku, q in lines}
            async with read_side(server, conn) as reads:
                await until(
                    eq(lambda: order_statuses(reads), dict.fromkeys(order_ids, "EXPIRED")),
                    what="the read model to show them EXPIRED",
                )
            async with users_on(server) as users:
                found = await users.staff.ok(
                    "{ orders(status: EXPIRED, first: 50) { edges { node { id expiresAt } } } }"
                )
            nodes = [e["node"] for e in found["orders"]["edges"]]
            assert sorted(n["id"] for n in nodes) == sorted(order_ids)
            assert all(n["expiresAt"] is None for n in nodes)
        finally:
            stop_server(server)
        assert not errors_logged(server), errors_logged(server)
    finally:
        await conn.close()
