"""Projections against real PostgreSQL: convergence, crashes, elections, rebuilds, failures."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from application.orders import CancelOrder, PayOrder, PlaceOrder, ShipOrder
from application.products import RegisterProduct, RestockProduct
from application.reviews import PostReview
from application.shop import Shop
from application.wishlist import AddToWishlist, RemoveFromWishlist
from domain.errors import DomainError
from domain.values import Actor
from eventgraph.readiness import readiness
from eventgraph.runtime import Runtime, open_runtime
from eventstore.events import ANY, NewEvent
from projections import all_projections
from projections.rebuild import rebuild
from tests.kit import readmodels

STAFF = Actor("sam", "staff")
SKUS = [f"P{i}" for i in range(6)]


async def dump(pool: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    """Every read model's rows (every one registered, each of its tables), as readers see
    them."""
    return await readmodels.dump(pool)


async def caught_up(runtime: Runtime, seconds: float = 60) -> int:
    head = await runtime.store.head()
    for projection in all_projections():
        await runtime.watch.wait(projection.name, head, seconds)
    return head


async def rebuilt(runtime: Runtime) -> dict[str, list[dict[str, Any]]]:
    for projection in all_projections():
        await rebuild(runtime.dsn, runtime.store, projection)
    return await dump(runtime.pool)


async def shop_traffic(shop: Shop, customers: int, rounds: int, seed: int = 1) -> None:
    rng = random.Random(seed)

    async def customer(c: int) -> None:
        actor = Actor(f"cust-{c}", "customer")
        for _ in range(rounds):
            lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(SKUS, rng.randint(1, 3))]
            try:
                placed = await shop.handle(PlaceOrder(actor, lines))
                roll = rng.random()
                if roll < 0.6:
                    await shop.handle(PayOrder(actor, placed.state.order_id, placed.state.total))
                    if rng.random() < 0.5:
                        await shop.handle(ShipOrder(STAFF, placed.state.order_id))
                    elif rng.random() < 0.3:
                        await shop.handle(CancelOrder(actor, placed.state.order_id, "changed mind"))
                elif roll < 0.8:
                    await shop.handle(CancelOrder(actor, placed.state.order_id, "too slow"))
                if rng.random() < 0.3:  # a review of what was bought, once per product
                    sku = rng.choice(lines)[0]
                    await shop.handle(PostReview(actor, sku, rng.randint(1, 5), "fine"))
            except DomainError:
                pass  # out of stock, or reviewed already: part of the traffic
            try:  # a product wished, and now and then one no longer
                sku = rng.choice(SKUS)
                if rng.random() < 0.3:
                    await shop.handle(RemoveFromWishlist(actor, sku))
                else:
                    await shop.handle(AddToWishlist(actor, sku))
            except DomainError:
                pass  # wished already, or not on the list

    await asyncio.gather(*(customer(c) for c in range(customers)))


async def register_catalogue(shop: Shop, stock: int = 400) -> None:
    for i, sku in enumerate(SKUS):
        await shop.handle(
            RegisterProduct(STAFF, sku, f"Product {i}", Decimal("1.25") * (i + 1), stock)
        )


async def test_read_models_under_concurrent_customers_converge_to_a_replay(clean_db: str) -> None:
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop)
        await shop_traffic(shop, customers=12, rounds=12)
        head = await caught_up(runtime)
        live = await dump(runtime.pool)
        assert head > 200 and len(live["orders"]) > 50
        idle = [name for name, rows in live.items() if not rows]
        assert not idle, f"no rows in {idle}: let shop_traffic drive the commands they follow"
        assert live == await rebuilt(runtime)
        # and the products view agrees with the product streams themselves
        for row in live["products"]:
            last = (await runtime.store.read_stream(f"product-{row['sku']}"))[-1]
            if last.type == "InventoryUpdated":
                assert (row["on_hand"], row["reserved"]) == (
                    last.data["onHand"],
                    last.data["reserved"],
                )


async def test_projector_connection_killed_mid_batch_applies_each_event_once(clean_db: str) -> None:
    async with open_runtime(clean_db, run_projectors=False) as writer:
        shop = Shop(writer.store)
        await register_catalogue(shop, stock=5_000)
        await shop_traffic(shop, customers=8, rounds=40, seed=2)
    async with open_runtime(clean_db) as runtime:
        for runner in runtime.runners:
            runner._batch_size = 25  # many small batches: kills land mid-catch-up
        kills = 0
        head = await runtime.store.head()
        while min(runtime.watch.position(p.name) for p in all_projections()) < head and kills < 40:
            kills += await runtime.pool.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name LIKE 'eventgraph-projector-%'"
                " AND datname = current_database()"
            )
            await asyncio.sleep(0.03)
        assert kills >= 3, "the projectors should have been killed while catching up"
        await caught_up(runtime)
        live = await dump(runtime.pool)
        assert live == await rebuilt(runtime)


def spawn_projector(
    database_url: str, tmp: Path, name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "eventgraph.cli", "project"],
            env={**os.environ, "DATABASE_URL": database_url, "EVENTGRAPH_DATA_DIR": str(tmp)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


async def wait_for(predicate: Any, seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        while not await predicate():
            await asyncio.sleep(0.05)


async def checkpoints(pool: asyncpg.Pool) -> dict[str, int]:
    return {
        r["name"]: r["position"]
        for r in await pool.fetch("SELECT name, position FROM eventgraph.projections")
    }


async def test_projector_process_killed_then_restarted_resumes_exactly(
    clean_db: str, tmp_path: Path
) -> None:
    async with open_runtime(clean_db, run_projectors=False) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop, stock=20_000)
        await shop_traffic(shop, customers=8, rounds=60, seed=3)
        head = await runtime.store.head()
        process, _ = spawn_projector(clean_db, tmp_path, "first")
        try:
            await wait_for(lambda: _any_progress(runtime.pool))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        partial = await checkpoints(runtime.pool)
        process, _ = spawn_projector(clean_db, tmp_path, "second")
        try:
            await wait_for(lambda: _all_at(runtime.pool, head))
        finally:
            process.terminate()
            process.wait(20)
        assert any(p < head for p in partial.values()), "killed before it finished"
        live = await dump(runtime.pool)
        assert live == await rebuilt(runtime)


async def _any_progress(pool: asyncpg.Pool) -> bool:
    return any(p > 0 for p in (await checkpoints(pool)).values())


async def _all_at(pool: asyncpg.Pool, head: int) -> bool:
    found = await checkpoints(pool)
    return len(found) == len(all_projections()) and all(p >= head for p in found.values())


async def test_two_projector_processes_elect_one_and_the_standby_takes_over(
    clean_db: str, tmp_path: Path
) -> None:
    async with open_runtime(clean_db, run_projectors=False) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop, stock=20_000)
        leader, leader_log = spawn_projector(clean_db, tmp_path, "leader")
        standby = None
        try:
            await wait_for(lambda: _leading(leader_log, 3))
            standby, standby_log = spawn_projector(clean_db, tmp_path, "standby")
            await shop_traffic(shop, customers=6, rounds=15, seed=4)
            head = await runtime.store.head()
            await wait_for(lambda: _all_at(runtime.pool, head))
            assert "leading" not in standby_log.read_text(), "only one process applies"
            leader.send_signal(signal.SIGKILL)
            leader.wait(10)
            await shop_traffic(shop, customers=6, rounds=15, seed=5)
            head = await runtime.store.head()
            await wait_for(lambda: _all_at(runtime.pool, head))
            assert await _leading(standby_log, 3)
        finally:
            for process in (leader, standby):
                if process is not None and process.poll() is None:
                    process.terminate()
                    process.wait(20)
        assert await dump(runtime.pool) == await rebuilt(runtime)


async def _leading(log: Path, count: int) -> bool:
    return log.exists() and log.read_text().count(": leading") >= count


async def test_rebuild_under_live_traffic_never_shows_an_empty_or_partial_model(
    clean_db: str,
) -> None:
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop, stock=50_000)
        await shop_traffic(shop, customers=6, rounds=30, seed=6)
        await caught_up(runtime)
        stop = asyncio.Event()
        violations: list[str] = []

        async def read_continuously() -> None:
            last_placed = 0
            while not stop.is_set():
                products = await runtime.pool.fetchval("SELECT count(*) FROM readmodel.products")
                placed = await runtime.pool.fetchval(
                    "SELECT orders_placed FROM readmodel.sales_totals"
                )
                orders = await runtime.pool.fetchval("SELECT count(*) FROM readmodel.orders")
                if products != len(SKUS):
                    violations.append(f"{products} products")
                if placed < last_placed or orders == 0:
                    violations.append(f"orders went back: {placed} < {last_placed}, {orders}")
                last_placed = placed
                await asyncio.sleep(0.002)

        reader = asyncio.create_task(read_continuously())
        writer = asyncio.create_task(shop_traffic(shop, customers=6, rounds=30, seed=7))
        for projection in all_projections():
            await rebuild(runtime.dsn, runtime.store, projection, batch_size=100)
        await writer
        stop.set()
        await reader
        assert not violations, violations[:5]
        await caught_up(runtime)
        generations = await runtime.pool.fetch(
            "SELECT name, generation FROM eventgraph.projections"
        )
        assert {r["generation"] for r in generations} == {2}
        assert await dump(runtime.pool) == await rebuilt(runtime)


async def test_an_event_a_projection_cannot_apply_stops_it_with_a_clear_error(
    clean_db: str,
) -> None:
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop)
        bad = await runtime.store.append(
            {
                "product-GHOST": (
                    ANY,
                    [
                        NewEvent(
                            "InventoryUpdated",
                            {
                                "sku": "GHOST",
                                "reason": "restock",
                                "quantity": 1,
                                "onHand": 1,
                                "reserved": 0,
                                "orderId": None,
                            },
                        )
                    ],
                )
            }
        )
        await shop.handle(
            RestockProduct(STAFF, SKUS[0], 5)
        )  # after the bad event: must not be applied
        await wait_for(lambda: _failed(runtime.pool, "products"))
        report = await readiness(runtime, max_lag_events=10_000)
        products = report["projections"]["products"]
        assert not report["ready"] and products["status"] == "failed"
        assert products["checkpoint"] == bad.last_position - 1, (
            "stopped just before it, nothing skipped"
        )
        assert (
            f"position {bad.last_position}" in products["error"]
            and "InventoryUpdated" in products["error"]
        )
        assert report["projections"]["orders"]["status"] == "running"


async def _failed(pool: asyncpg.Pool, name: str) -> bool:
    return (
        await pool.fetchval("SELECT status FROM eventgraph.projections WHERE name = $1", name)
        == "failed"
    )


@pytest.mark.parametrize("lag_bound", [0])
async def test_readiness_reports_lag_beyond_the_bound(clean_db: str, lag_bound: int) -> None:
    async with open_runtime(clean_db, run_projectors=False) as runtime:
        await register_catalogue(Shop(runtime.store))
        report = await readiness(runtime, max_lag_events=lag_bound)
        assert not report["ready"]
        assert report["projections"]["products"]["lagEvents"] == report["head"] == len(SKUS)
        assert report["projections"]["products"]["lagSeconds"] >= 0


async def test_stock_events_ahead_of_their_order_in_one_append_are_not_order_events(
    clean_db: str,
) -> None:
    """One multi-stream append may put a product stream before the order stream: the orders
    projection must ignore stock movements, whatever their place in the log."""
    from datetime import UTC, datetime

    from domain import order, product
    from domain.codec import encode
    from domain.order import OrderLine

    now = datetime.now(UTC)
    async with open_runtime(clean_db) as runtime:
        await Shop(runtime.store).handle(RegisterProduct(STAFF, "A", "A", "2.00", 5))

        def new(event: Any) -> NewEvent:
            event_type, version, data = encode(event)
            return NewEvent(event_type, data, version)

        oid = "00000000-0000-4000-8000-000000000001"
        await runtime.store.append(
            {
                "product-A": (
                    ANY,
                    [
                        new(
                            product.InventoryUpdated(
                                "A", product.StockChange.RESERVATION, 2, 5, 2, oid, now
                            )
                        )
                    ],
                ),
                f"order-{oid}": (
                    ANY,
                    [
                        new(
                            order.OrderPlaced(
                                oid,
                                "c1",
                                (OrderLine("A", 2, Decimal("2.00")),),
                                Decimal("4.00"),
                                now,
                            )
                        )
                    ],
                ),
            }
        )
        await caught_up(runtime)
        live = await dump(runtime.pool)
        assert [r["reserved"] for r in live["products"]] == [2]
        assert [r["order_id"] for r in live["orders"]] == [oid]
        assert (
            await runtime.pool.fetchval(
                "SELECT status FROM eventgraph.projections WHERE name = 'orders'"
            )
        ) == "running"
