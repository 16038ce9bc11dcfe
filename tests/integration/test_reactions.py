"""Reactions with durable timers against real PostgreSQL, on a clock the test moves: order
expiry (stock comes back; a paid order never expires; payments racing their deadlines; a
crash between a timer's command and its deletion; timers due while no process ran) and the
low-stock flag, once per crossing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from application.commands import Policy
from application.expiry import OrderExpiry
from application.orders import PayOrder, PlaceOrder
from application.products import RegisterProduct, RestockProduct
from application.reactions import ReactionRunner, Timer
from application.shop import Shop
from domain.errors import InsufficientStock, InvalidState
from domain.order import OrderStatus
from domain.values import Actor
from eventgraph.runtime import Runtime, open_runtime
from eventstore.store import init_connection
from tests.integration.test_projections import caught_up, dump, rebuilt

STAFF = Actor("sam", "staff")
ALICE = Actor("alice", "customer")
WINDOW = timedelta(seconds=60)


class Clock:
    """The time every command and reaction of the runtime decides by; the test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@asynccontextmanager
async def shop_on(
    dsn: str, clock: Clock, *, run_projectors: bool = True, low_stock: int = 0
) -> AsyncIterator[Runtime]:
    policy = Policy(payment_window=WINDOW, low_stock_threshold=low_stock)
    async with open_runtime(dsn, run_projectors=run_projectors, policy=policy, clock=clock) as rt:
        yield rt


def shop(runtime: Runtime) -> Shop:
    assert runtime.shop is not None
    return runtime.shop


async def until(check: object, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()  # type: ignore[operator]
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def statuses(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT order_id, status FROM readmodel.orders")
    return {r["order_id"]: r["status"] for r in rows}


async def events_of(pool: asyncpg.Pool, event_type: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT stream_id FROM eventgraph.events WHERE type = $1 ORDER BY position", event_type
    )
    return [r["stream_id"] for r in rows]


async def pending(pool: asyncpg.Pool, reaction: str = "order-expiry") -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM eventgraph.timers WHERE reaction = $1", reaction)
    )


async def test_unpaid_orders_expire_and_their_stock_comes_back(clean_db: str) -> None:
    clock = Clock()
    async with shop_on(clean_db, clock) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "2.00", 5))
        unpaid = await s.handle(PlaceOrder(ALICE, [("A", 3)]))
        paid = await s.handle(PlaceOrder(ALICE, [("A", 2)]))
        assert unpaid.state.expires_at == clock.now + WINDOW
        await s.handle(PayOrder(ALICE, paid.state.order_id, "4.00"))
        with pytest.raises(InsufficientStock):  # sold out meanwhile
            await s.handle(PlaceOrder(Actor("bob", "customer"), [("A", 1)]))
        await until(lambda: _eq(pending(runtime.pool), 1))

        clock.advance(WINDOW - timedelta(seconds=1))
        await asyncio.sleep(1.5)  # a moment before the deadline: nothing fires
        assert await events_of(runtime.pool, "OrderExpired") == []

        clock.advance(timedelta(seconds=1))
        await until(
            lambda: _eq(events_of(runtime.pool, "OrderExpired"), [f"order-{unpaid.state.order_id}"])
        )
        await caught_up(runtime)
        assert (await statuses(runtime.pool)) == {
            unpaid.state.order_id: "EXPIRED",
            paid.state.order_id: "PAID",
        }
        product = await runtime.pool.fetchrow("SELECT * FROM readmodel.products WHERE sku = 'A'")
        assert (product["on_hand"], product["reserved"]) == (5, 2)  # the 3 came back
        sales = await runtime.pool.fetchrow("SELECT * FROM readmodel.sales_totals")
        assert (sales["orders_expired"], sales["orders_paid"]) == (1, 1)
        expired = await runtime.pool.fetchrow(
            "SELECT status, expires_at FROM readmodel.orders WHERE order_id = $1",
            unpaid.state.order_id,
        )
        assert (expired["status"], expired["expires_at"]) == ("EXPIRED", None)
        # Another customer can buy it now; a payment of the expired order is refused.
        bobs = await s.handle(PlaceOrder(Actor("bob", "customer"), [("A", 3)]))
        with pytest.raises(InvalidState):
            await s.handle(PayOrder(ALICE, unpaid.state.order_id, "6.00"))

        # The paid order never expires, however long it waits; no timer is left behind.
        clock.advance(timedelta(days=30))
        await asyncio.sleep(1.5)
        assert await events_of(runtime.pool, "OrderExpired") == [
            f"order-{unpaid.state.order_id}",
            f"order-{bobs.state.order_id}",
        ]
        assert (await statuses(runtime.pool))[paid.state.order_id] == "PAID"
        await caught_up(runtime)
        before = await dump(runtime.pool)
        assert await rebuilt(runtime) == before  # a replay agrees


async def _eq(awaitable: object, expected: object) -> bool:
    return await awaitable == expected  # type: ignore[misc]


async def test_payments_racing_their_deadlines_end_paid_or_expired_never_both(
    clean_db: str,
) -> None:
    clock = Clock()
    async with shop_on(clean_db, clock) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 1_000))
        placed = [(await s.handle(PlaceOrder(ALICE, [("A", 1 + i % 3)]))).state for i in range(100)]
        await until(lambda: _eq(pending(runtime.pool), 100))
        clock.advance(WINDOW)  # every deadline is now: the timers and the payments race

        async def pay(order_id: str, total: Decimal) -> str:
            try:
                await s.handle(PayOrder(ALICE, order_id, total))
                return "PAID"
            except InvalidState:
                return "refused"

        paid = await asyncio.gather(*(pay(o.order_id, o.total) for o in placed))
        await until(lambda: _eq(pending(runtime.pool), 0))
        await caught_up(runtime)
        final = await statuses(runtime.pool)
        expired = set(await events_of(runtime.pool, "OrderExpired"))
        payments = set(await events_of(runtime.pool, "PaymentProcessed"))
        assert not expired & payments  # never both
        for order, outcome in zip(placed, paid, strict=True):
            stream = f"order-{order.order_id}"
            assert final[order.order_id] in ("PAID", "EXPIRED")
            assert (stream in payments) == (outcome == "PAID") == (final[order.order_id] == "PAID")
        # A payment at or after the deadline is refused even before the timer fires.
        assert all(outcome == "refused" for outcome in paid)
        held = sum(o.lines[0].quantity for o in placed if final[o.order_id] == "PAID")
        product = await runtime.pool.fetchrow("SELECT * FROM readmodel.products WHERE sku = 'A'")
        assert (product["on_hand"], product["reserved"]) == (1_000, held)


async def test_payments_just_before_the_deadline_win_and_the_rest_expire(clean_db: str) -> None:
    clock = Clock()
    async with shop_on(clean_db, clock) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 1_000))
        placed = [(await s.handle(PlaceOrder(ALICE, [("A", 2)]))).state for _ in range(100)]
        await until(lambda: _eq(pending(runtime.pool), 100))
        clock.advance(WINDOW - timedelta(microseconds=1))
        halves = placed[::2]

        async def expire_soon() -> None:
            await asyncio.sleep(0.01)
            clock.advance(timedelta(microseconds=1))

        async def pay(order_id: str, total: Decimal) -> bool:
            try:
                await s.handle(PayOrder(ALICE, order_id, total))
                return True
            except InvalidState:
                return False

        results = await asyncio.gather(expire_soon(), *(pay(o.order_id, o.total) for o in halves))
        await until(lambda: _eq(pending(runtime.pool), 0))
        await caught_up(runtime)
        final = await statuses(runtime.pool)
        won = {o.order_id for o, ok in zip(halves, results[1:], strict=True) if ok}
        for o in placed:
            assert final[o.order_id] == ("PAID" if o.order_id in won else "EXPIRED")
        expired = await events_of(runtime.pool, "OrderExpired")
        assert len(expired) == len(set(expired)) == 100 - len(won)
        product = await runtime.pool.fetchrow("SELECT * FROM readmodel.products WHERE sku = 'A'")
        assert product["reserved"] == 2 * len(won)


async def test_a_timer_fired_again_after_a_crash_repeats_nothing(clean_db: str) -> None:
    """A crash after the command appended but before the timer was deleted: the next leader
    fires it again, and the idempotency key derived from the timer finds the first result."""
    clock = Clock()
    async with shop_on(clean_db, clock, run_projectors=False) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 5))
        placed = (await s.handle(PlaceOrder(ALICE, [("A", 2)]))).state
        runner = ReactionRunner(
            OrderExpiry(), clean_db, runtime.store, s, runtime.log_signal, clock=clock
        )
        conn = await asyncpg.connect(clean_db)
        await init_connection(conn)
        try:
            while await runner.step(conn):
                pass
            row = await conn.fetchrow("SELECT * FROM eventgraph.timers")
            timer = Timer(
                "order-expiry",
                row["key"],
                row["due_at"],
                {"orderId": placed.order_id},
                row["scheduled_at"],
            )
            clock.advance(WINDOW)
            # The first leader's command went through, then it died before deleting the timer.
            first = await s.handle(OrderExpiry().command(timer))
            assert not first.replayed and first.state.status is OrderStatus.EXPIRED
            assert await runner.fire_due(conn) == 1
            assert await pending(runtime.pool) == 0
            assert await events_of(runtime.pool, "OrderExpired") == [f"order-{placed.order_id}"]
            releases = await runtime.pool.fetchval(
                "SELECT count(*) FROM eventgraph.events WHERE type = 'InventoryUpdated'"
                " AND data->>'reason' = 'release'"
            )
            assert releases == 1
        finally:
            await conn.close()


async def test_an_expiry_told_the_wrong_products_reads_the_order_and_a_repeat_is_a_replay(
    clean_db: str,
) -> None:
    """A timer names the order's products so that firing need not read the order first; a
    wrong list (a bug, an edited row) falls back to reading it. The server's own commands skip
    the key lookup before deciding: the append's key check answers a repeat instead."""
    clock = Clock()
    async with shop_on(clean_db, clock, run_projectors=False) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 5))
        await s.handle(RegisterProduct(STAFF, "B", "B", "1.00", 5))
        placed = (await s.handle(PlaceOrder(ALICE, [("A", 2), ("B", 1)]))).state
        clock.advance(WINDOW)
        timer = Timer("order-expiry", placed.order_id, clock.now,
                      {"orderId": placed.order_id, "skus": ["B", "Z"]}, clock.now)  # fmt: skip
        command = OrderExpiry().command(timer)
        assert command.skus == ("B", "Z")
        first = await s.handle(command)
        assert not first.replayed and first.state.status is OrderStatus.EXPIRED
        again = await s.handle(command)
        assert again.replayed and again.position == first.position
        stock = {
            r["stream_id"]: r["data"]["reserved"]
            for r in await runtime.pool.fetch(
                "SELECT DISTINCT ON (stream_id) stream_id, data FROM eventgraph.events"
                " WHERE type = 'InventoryUpdated' ORDER BY stream_id, position DESC"
            )
        }
        assert stock == {"product-A": 0, "product-B": 0}
        assert len(await events_of(runtime.pool, "OrderExpired")) == 1


async def test_timers_that_came_due_while_nothing_ran_fire_after_start_in_order(
    clean_db: str,
) -> None:
    clock = Clock()
    async with shop_on(clean_db, clock) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 100))
        placed = []
        for _ in range(5):
            placed.append((await s.handle(PlaceOrder(ALICE, [("A", 1)]))).state)
            clock.advance(timedelta(seconds=1))
        await until(lambda: _eq(pending(runtime.pool), 5))
    # Down for a day: every deadline passes with no process running.
    clock.advance(timedelta(days=1))
    async with shop_on(clean_db, clock) as runtime:
        await until(lambda: _eq(pending(runtime.pool), 0))
        expired = await events_of(runtime.pool, "OrderExpired")
        # Oldest first, a batch at a time; the commands of one batch run together.
        assert sorted(expired) == sorted(f"order-{o.order_id}" for o in placed)


async def test_due_timers_fire_oldest_first(clean_db: str) -> None:
    clock = Clock()
    async with shop_on(clean_db, clock, run_projectors=False) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 100))
        placed = []
        for _ in range(5):
            placed.append((await s.handle(PlaceOrder(ALICE, [("A", 1)]))).state)
            clock.advance(timedelta(seconds=-1))  # each one's deadline before the last's
        clock.advance(timedelta(days=1))
        runner = ReactionRunner(
            OrderExpiry(), clean_db, runtime.store, s, runtime.log_signal, clock=clock,
            fire_batch=2, concurrency=1,
        )  # fmt: skip
        conn = await asyncpg.connect(clean_db)
        await init_connection(conn)
        try:
            while await runner.step(conn):
                pass
            assert [await runner.fire_due(conn) for _ in range(4)] == [2, 2, 1, 0]
        finally:
            await conn.close()
        expired = await events_of(runtime.pool, "OrderExpired")
        assert expired == [f"order-{o.order_id}" for o in reversed(placed)]


async def test_orders_placed_with_deadlines_off_never_expire(clean_db: str) -> None:
    clock = Clock()
    policy = Policy(payment_window=None, low_stock_threshold=0)
    async with open_runtime(clean_db, policy=policy, clock=clock) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 5))
        placed = (await s.handle(PlaceOrder(ALICE, [("A", 1)]))).state
        assert placed.expires_at is None
        await reacted(runtime)
        clock.advance(timedelta(days=365))
        await asyncio.sleep(1.0)
        assert await pending(runtime.pool) == 0
        assert await events_of(runtime.pool, "OrderExpired") == []


async def reacted(runtime: Runtime) -> None:
    """Until every reaction has followed the log to its head."""
    head = await runtime.store.head()

    async def done() -> bool:
        behind = await runtime.pool.fetchval(
            "SELECT count(*) FROM eventgraph.reactions WHERE position < $1", head
        )
        return behind == 0

    await until(done)


async def test_low_stock_is_flagged_once_per_crossing(clean_db: str) -> None:
    clock = Clock()
    async with shop_on(clean_db, clock, low_stock=5) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 10))
        await s.handle(PlaceOrder(ALICE, [("A", 4)]))  # 6 left: not yet
        await s.handle(PlaceOrder(ALICE, [("A", 2)]))  # 4 left: crossed
        await s.handle(PlaceOrder(ALICE, [("A", 1)]))  # 3 left: still below
        await until(lambda: _eq(events_of(runtime.pool, "LowStockReached"), ["product-A"]))
        await caught_up(runtime)
        row = await runtime.pool.fetchrow("SELECT * FROM readmodel.products WHERE sku = 'A'")
        assert row["low_below"] == 5 and row["low_since"] == clock.now
        await s.handle(RestockProduct(STAFF, "A", 10))  # 13: back above
        await caught_up(runtime)
        row = await runtime.pool.fetchrow("SELECT * FROM readmodel.products WHERE sku = 'A'")
        assert row["low_since"] is None
        await s.handle(PlaceOrder(ALICE, [("A", 9)]))  # 4: the second crossing
        await until(lambda: _eq(events_of(runtime.pool, "LowStockReached"), ["product-A"] * 2))
        await asyncio.sleep(1.0)
        assert len(await events_of(runtime.pool, "LowStockReached")) == 2
        assert await pending(runtime.pool, "low-stock") == 0


async def test_read_models_of_an_earlier_version_gain_the_new_columns_on_start(
    clean_db: str,
) -> None:
    """A deployment whose tables predate deadlines: the columns are added to the live
    generation and its views at start, with no rebuild, and the projectors fill them."""
    clock = Clock()
    async with shop_on(clean_db, clock) as runtime:
        await shop(runtime).handle(RegisterProduct(STAFF, "A", "A", "1.00", 9))
        await caught_up(runtime)
    conn = await asyncpg.connect(clean_db)
    try:
        for view, table, column in [
            ("orders", "orders", "expires_at"),
            ("products", "products", "low_since"),
            ("products", "products", "low_below"),
            ("sales_totals", "sales_totals", "orders_expired"),
        ]:
            schema = await conn.fetchval(
                "SELECT table_schema FROM information_schema.columns"
                " WHERE table_name = $1 AND column_name = $2 AND table_schema LIKE 'rm_%'",
                table,
                column,
            )
            await conn.execute(f"DROP VIEW readmodel.{view}")
            await conn.execute(f"ALTER TABLE {schema}.{table} DROP COLUMN {column}")
            await conn.execute(f"CREATE VIEW readmodel.{view} AS SELECT * FROM {schema}.{table}")
    finally:
        await conn.close()
    async with shop_on(clean_db, clock, low_stock=5) as runtime:
        s = shop(runtime)
        placed = (await s.handle(PlaceOrder(ALICE, [("A", 5)]))).state
        await until(lambda: _eq(events_of(runtime.pool, "LowStockReached"), ["product-A"]))
        await caught_up(runtime)
        product = await runtime.pool.fetchrow("SELECT * FROM readmodel.products")
        assert product["low_below"] == 5 and product["low_since"] is not None
        clock.advance(WINDOW)
        await until(lambda: _eq(pending(runtime.pool), 0))
        await caught_up(runtime)
        order = await runtime.pool.fetchrow("SELECT * FROM readmodel.orders")
        assert (order["order_id"], order["status"]) == (placed.order_id, "EXPIRED")
        sales = await runtime.pool.fetchrow("SELECT * FROM readmodel.sales_totals")
        assert sales["orders_expired"] == 1
        product = await runtime.pool.fetchrow("SELECT * FROM readmodel.products")
        assert product["reserved"] == 0  # released by the expiry: 9 available again
        assert product["low_below"] is None and product["low_since"] is None


async def test_a_timer_refused_as_early_is_kept_and_fired_again_not_dropped(
    clean_db: str,
) -> None:
    """The process that found the timer due has a clock ahead of the one deciding (or the
    clock stepped back): the order says "not yet", and the timer waits and fires later."""
    clock = Clock()
    async with shop_on(clean_db, clock, run_projectors=False) as runtime:
        s = shop(runtime)
        await s.handle(RegisterProduct(STAFF, "A", "A", "1.00", 5))
        placed = (await s.handle(PlaceOrder(ALICE, [("A", 2)]))).state
        ahead = Clock()
        ahead.now = clock.now + WINDOW
        runner = ReactionRunner(
            OrderExpiry(), clean_db, runtime.store, s, runtime.log_signal, clock=ahead
        )
        conn = await asyncpg.connect(clean_db)
        await init_connection(conn)
        try:
            while await runner.step(conn):
                pass
            assert await runner.fire_due(conn) == 1  # refused: the shop's clock is behind
            row = await conn.fetchrow("SELECT attempts, due_at, last_error FROM eventgraph.timers")
            assert row["attempts"] == 1 and row["due_at"] > ahead.now
            assert "NotYet" in row["last_error"]
            assert await events_of(runtime.pool, "OrderExpired") == []
            clock.advance(WINDOW)  # the shop's clock catches up
            ahead.advance(timedelta(seconds=2))  # the retry's delay passes
            assert await runner.fire_due(conn) == 1
            assert await pending(runtime.pool) == 0
            assert await events_of(runtime.pool, "OrderExpired") == [f"order-{placed.order_id}"]
        finally:
            await conn.close()
