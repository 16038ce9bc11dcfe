"""The separated read side (EVENTGRAPH_READ_DATABASE_URL): read models, checkpoints and
rebuilds on a database of their own, the log on the event store's. The projector commits
each batch's writes and its checkpoint together on the read database, so killing its
connections there mid-batch loses nothing and applies nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from application.orders import PlaceOrder
from application.products import RegisterProduct
from application.shop import Shop
from domain.values import Actor
from eventgraph.runtime import Runtime, open_runtime
from projections import all_projections, by_name, products, sales
from projections.rebuild import rebuild
from tests.kit.database import fresh_database

STAFF = Actor("staff-1", "staff")


@pytest.fixture
async def read_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


async def caught_up(runtime: Runtime, seconds: float = 30) -> None:
    head = await runtime.store.head()
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        rows = await runtime.reads.fetch(
            "SELECT name, position, status FROM eventgraph.projections"
        )
        assert all(r["status"] == "running" for r in rows), rows
        if len(rows) == len(all_projections()) and all(r["position"] >= head for r in rows):
            return
        assert asyncio.get_running_loop().time() < deadline, (head, rows)
        await asyncio.sleep(0.05)


async def test_read_models_live_on_the_read_database_and_survive_killed_connections(
    clean_db: str, read_url: str
) -> None:
    async with open_runtime(clean_db, read_dsn=read_url) as runtime:
        assert runtime.reads is not runtime.pool
        shop = Shop(runtime.store)
        skus = [f"R-{i}" for i in range(5)]
        for sku in skus:
            await shop.handle(RegisterProduct(STAFF, sku, sku, "2.00", 1_000))

        async def orders(n: int) -> int:
            placed = 0
            for i in range(n):
                buyer = Actor(f"c{i % 7}", "customer")
                await shop.handle(PlaceOrder(buyer, [(skus[i % 5], 1)]))
                placed += 1
            return placed

        async def kill_read_connections() -> int:
            killed = 0
            admin = await asyncpg.connect(read_url)
            try:
                for _ in range(6):
                    await asyncio.sleep(0.15)
                    killed += await admin.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND application_name LIKE 'eventgraph-projector-%'"
                    )
            finally:
                await admin.close()
            return killed

        placed, killed = await asyncio.gather(
            asyncio.gather(*(orders(60) for _ in range(4))), kill_read_connections()
        )
        assert killed > 0
        await caught_up(runtime)

        # Nothing lost, nothing applied twice: the read side equals the log.
        total = sum(placed)
        dashboard = await sales.dashboard(runtime.reads)
        assert dashboard.orders_placed == total
        for sku in skus:  # four buyers' 60 orders each, spread over five products
            view = await products.product(runtime.reads, sku)
            assert view is not None and view.reserved == 4 * 60 // 5, sku

        # The event store's database holds the log and no read side.
        on_store = await runtime.pool.fetchval("SELECT count(*) FROM eventgraph.projections")
        on_read = await runtime.reads.fetchval("SELECT count(*) FROM eventgraph.events")
        assert on_store == 0 and on_read == 0
        read_models = await runtime.pool.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rm\\_%'"
        )
        assert read_models == 0

        # A rebuild on the read side switches to a new generation with the same content.
        before = await sales.dashboard(runtime.reads)
        done = await rebuild(runtime.read_dsn, runtime.store, by_name("sales"))
        assert done.done >= total
        generation = await runtime.reads.fetchval(
            "SELECT generation FROM eventgraph.projections WHERE name = 'sales'"
        )
        assert generation == 2
        after = await sales.dashboard(runtime.reads)
        assert (after.orders_placed, after.revenue) == (before.orders_placed, before.revenue)
