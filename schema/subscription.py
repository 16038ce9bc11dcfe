"""The contract's subscriptions: live views (current view first, then each newer one) and
the event log (catch-up, then live, every event once, in order)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import strawberry

from domain import ids, values
from eventstore.notify import Signal
from projections import orders, products, sales
from projections.slice import EVERY, LiveTopic
from schema.context import Info
from schema.errors import CONNECTION_LOST
from schema.query import SalesDashboard, event_filter, given
from schema.scalars import Position
from schema.sharing import shared
from schema.types import DomainEvent, Order, Product


async def _feed(
    info: Info, spec: LiveTopic, key: str, after: int | None
) -> AsyncGenerator[Order, None]:
    """A feed's views (see `LiveViews.feed`); a subscriber that falls behind gets UNAVAILABLE
    with `extensions.position`, the last position it was sent, to resume after
    (`FellBehind`, formatted in schema/errors.py)."""
    await info.context.at_least(orders.NAME)
    if after is not None:
        await info.context.require_in_log(after, "after")
    now = info.context.services.watch.position(orders.NAME)
    live = info.context.services.live
    async with contextlib.aclosing(live.feed(spec, key, after, now)) as views:
        async for view in views:
            yield Order.from_view(view)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Live view of one order: the order's customer or staff.")
    @shared("user")
    async def order(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Order, None]:
        actor = info.context.actor
        live = info.context.services.live
        order_id = ids.order_id(id, field="id")
        await info.context.at_least(orders.NAME)
        first = await orders.order(info.context.pool, order_id)
        async with contextlib.aclosing(live.watch(orders.BY_ID, order_id, first)) as views:
            async for view in views:
                actor.require_access(view.customer_id)
                yield Order.from_view(view)

    @strawberry.subscription(description="Live view of one product: any signed-in user.")
    @shared("role")
    async def product(self, info: Info, sku: str) -> AsyncGenerator[Product, None]:
        info.context.require_user()
        values.sku(sku)
        live = info.context.services.live
        await info.context.at_least(products.NAME)
        first = await products.product(info.context.pool, sku)
        async with contextlib.aclosing(live.watch(products.BY_SKU, sku, first)) as views:
            async for view in views:
                yield Product.from_view(view)

    @strawberry.subscription(
        description=(
            "Every change to any of the viewer's own orders, as the order's new view. A feed:"
            " see Feeds."
        )
    )
    async def my_orders(
        self, info: Info, after: Position | None = strawberry.UNSET
    ) -> AsyncGenerator[Order, None]:
        actor = info.context.actor
        async for view in _feed(info, orders.BY_CUSTOMER, actor.id, given(after)):
            yield view

    @strawberry.subscription(
        description=(
            "Staff only. Every change to any order, as the order's new view. A feed: see Feeds."
        )
    )
    async def orders(
        self, info: Info, after: Position | None = strawberry.UNSET
    ) -> AsyncGenerator[Order, None]:
        info.context.actor.require_staff()
        async for view in _feed(info, orders.ALL, EVERY, given(after)):
            yield view

    @strawberry.subscription(description="Staff only.")
    @shared("role")
    async def sales_dashboard(self, info: Info) -> AsyncGenerator[SalesDashboard, None]:
        info.context.actor.require_staff()
        live = info.context.services.live
        await info.context.at_least(sales.NAME)
        first = await sales.dashboard(info.context.pool)
        key = sales.DASHBOARD_KEY
        async with contextlib.aclosing(live.watch(sales.DASHBOARD, key, first)) as views:
            async for view in views:
                yield SalesDashboard.from_view(view)

    @strawberry.subscription(
        description=(
            "Staff only. Catch-up from after, then live: every event once, in order, no gaps."
        )
    )
    async def events(
        self,
        info: Info,
        after: Position | None = 0,
        stream_id: str | None = strawberry.UNSET,
        types: list[str] | None = strawberry.UNSET,
    ) -> AsyncGenerator[DomainEvent, None]:
        info.context.actor.require_staff()
        kinds = given(types)
        stream = event_filter(given(stream_id), kinds)
        store = info.context.services.store
        signal = info.context.services.log_signal
        position = after or 0
        while True:
            armed = signal.armed()
            try:
                safe = await store.head()
                batch = await store.read_all(position, 500, stream_id=stream, types=kinds)
            except CONNECTION_LOST:  # the database is back soon: resume from `position`
                await asyncio.sleep(0.2)
                continue
            for event in batch:
                yield DomainEvent.from_recorded(event)
            if len(batch) == 500:
                position = batch[-1].position
                continue
            # Everything matching up to `safe` has been read (read_all went at least as far).
            position = max(position, safe, batch[-1].position if batch else 0)
            await Signal.wait(armed, 0.005 if store.frontier.waiting_on_holes else 1.0)
