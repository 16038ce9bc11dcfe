"""A joined live view against real PostgreSQL and running projectors: the test-only read
model of tests/kit/bought.py (what each customer has in open orders, with each product's
current availability from the `products` read model), registered only here. Its view is
pushed when its own rows change and when a followed row of another read model changes,
stamped with its own read model's position; a product nobody watching bought costs nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import asyncpg
import pytest

from application.orders import CancelOrder, PlaceOrder
from application.products import RegisterProduct, RestockProduct
from application.shop import Shop
from domain.values import Actor
from eventgraph.runtime import Runtime, open_runtime
from projections.generations import ensure_projection
from projections.live import LiveViews
from projections.runner import ProjectionRunner
from tests.kit import bought

STAFF = Actor("sam", "staff")
ANN = Actor("ann", "customer")


@contextlib.asynccontextmanager
async def with_bought(clean_db: str) -> AsyncIterator[tuple[Runtime, LiveViews]]:
    """A runtime with every registered projector, plus the test read model's projector and
    live views of it alone."""
    projection = bought.READ_MODEL.projection
    async with open_runtime(clean_db) as runtime:
        dsn = runtime.read_dsn or clean_db
        conn = await asyncpg.connect(dsn)
        try:
            await ensure_projection(conn, projection)
        finally:
            await conn.close()
        runner = ProjectionRunner(
            projection, dsn, runtime.store, runtime.log_signal, runtime.watch.advance
        )
        live = LiveViews(runtime.reads, runtime.watch, [bought.READ_MODEL], heal_interval=30)
        runner.start()
        live.start()
        try:
            yield runtime, live
        finally:
            await live.stop()
            await runner.stop()


async def caught_up(runtime: Runtime) -> int:
    head = await runtime.store.head()
    for name in (bought.NAME, "products"):
        await runtime.watch.wait(name, head, 30)
    return head


@contextlib.asynccontextmanager
async def reading(views: AsyncGenerator[Any, None]) -> AsyncIterator[asyncio.Queue[Any]]:
    """The views as they are pushed, into a queue (a timed-out wait on the queue leaves the
    subscription alone, where one on the generator would end it)."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        async for view in views:
            await queue.put(view)

    task = asyncio.create_task(pump())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await views.aclose()


async def next_view(views: asyncio.Queue[Any], seconds: float = 10) -> Any:
    return await asyncio.wait_for(views.get(), seconds)


async def test_a_joined_view_is_pushed_when_a_row_of_another_read_model_it_follows_changes(
    clean_db: str,
) -> None:
    async with with_bought(clean_db) as (runtime, live):
        shop = Shop(runtime.store)
        for sku in ("A", "B"):
            await shop.handle(RegisterProduct(STAFF, sku, sku, "1.00", 10))
        placed = await shop.handle(PlaceOrder(ANN, [("A", 2)]))
        await caught_up(runtime)
        async with reading(live.watch(bought.BY_CUSTOMER, "ann", None)) as views:
            first = await next_view(views)
            assert first.items == (("A", 2, 8),) and first.position >= placed.position

            await shop.handle(RestockProduct(STAFF, "B", 5))  # ann has no B: nothing to push
            await shop.handle(RestockProduct(STAFF, "A", 5))
            pushed = await next_view(views)
            assert pushed.items == (("A", 2, 13),), "the restock of A, and nothing for B"
            assert pushed.changed > first.changed and pushed.position >= first.position
            at = await runtime.reads.fetchval(
                "SELECT position FROM eventgraph.projections WHERE name = $1", bought.NAME
            )
            assert pushed.position <= at  # its own read model's position, read with it

            # a second subscriber gets its own first view; the first one gets nothing again
            async with reading(live.watch(bought.BY_CUSTOMER, "ann", None)) as other:
                assert (await next_view(other)).items == pushed.items
                with pytest.raises(TimeoutError):
                    await next_view(views, 0.5)

            cancelled = await shop.handle(CancelOrder(ANN, placed.state.order_id, "no"))
            emptied = await next_view(views)  # its rows deleted, its buyer row stamped
            if emptied.items:  # products applied the release of the stock first
                assert emptied.items == (("A", 2, 15),)
                emptied = await next_view(views)
            assert emptied.items == () and emptied.position >= cancelled.position

        views_now = await bought.BY_CUSTOMER.read(runtime.reads, ["ann", "zed"])
        assert views_now["ann"].items == () and views_now["zed"].items == ()
        assert views_now["zed"].position == views_now["ann"].position > 0


async def test_an_empty_view_is_the_first_view_of_a_key_with_no_rows(clean_db: str) -> None:
    async with with_bought(clean_db) as (runtime, live):
        shop = Shop(runtime.store)
        await shop.handle(RegisterProduct(STAFF, "A", "A", "1.00", 10))
        async with reading(live.watch(bought.BY_CUSTOMER, "ann", None)) as views:
            empty = await next_view(views)
            assert empty.items == ()
            placed = await shop.handle(PlaceOrder(ANN, [("A", 3)]))
            view = await next_view(views)
            # this read model and products apply the order apart: either may be pushed first
            while view.items != (("A", 3, 7),):
                assert view.items in ((("A", 3, 10),), ())
                view = await next_view(views)
            assert view.position >= placed.position
