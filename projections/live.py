"""Live views: each subscriber of a view gets the current view first, then every newer one,
from one bounded slot where the newest view wins, so a slow subscriber never makes the
server's memory grow and always ends on the latest state.

One refresh per projection advance serves every subscriber in this process: the rows of all
watched keys are read in one query and handed to each key's subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from projections.read import ReadModels
from projections.watch import ProjectionWatch
from support.background import BackgroundLoop
from support.mailbox import Mailbox

log = logging.getLogger(__name__)

Row = asyncpg.Record


class Slot(Mailbox[Row]):
    """One subscriber's mailbox: at most one view per key, the newest by log position."""

    def __init__(self) -> None:
        super().__init__(rank=lambda row: int(row["position"]))

    async def next(self) -> Row:
        row = await self.take()
        assert row is not None  # a slot is never closed
        return row


class Topic:
    """The subscribers of one kind of view, by key, and how to read their rows."""

    def __init__(
        self,
        load: Callable[[Sequence[Any]], Awaitable[list[tuple[Any, Row]]]],
        slot_key: Callable[[Any, Row], Any] = lambda key, _row: key,
    ):
        self.load = load
        self.slot_key = slot_key
        self.subscribers: dict[Any, set[Slot]] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._again = False

    def request_refresh(self) -> None:
        if self._refreshing is not None:
            self._again = True
            return
        self._refreshing = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            while True:
                self._again = False
                keys = list(self.subscribers)
                if keys:
                    try:
                        for key, row in await self.load(keys):
                            for slot in list(self.subscribers.get(key, ())):
                                slot.offer(self.slot_key(key, row), row)
                    except Exception as exc:  # the periodic refresh heals a failed one
                        log.warning("live view refresh failed: %s", exc)
                if not self._again:
                    return
        finally:
            self._refreshing = None

    @contextlib.contextmanager
    def subscribed(self, key: Any, slot: Slot) -> Any:
        self.subscribers.setdefault(key, set()).add(slot)
        try:
            yield
        finally:
            slots = self.subscribers.get(key)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self.subscribers[key]


class LiveViews:
    def __init__(self, reads: ReadModels, watch: ProjectionWatch, heal_interval: float = 1.0):
        self._reads = reads
        self._heal_interval = heal_interval
        self.products = Topic(self._load_products)
        self.orders = Topic(self._load_orders)
        self.customers = Topic(self._load_customers, lambda _customer, row: row["order_id"])
        self._customers_since = 0
        self.dashboard = Topic(self._load_dashboard)
        self._by_projection = {
            "products": [self.products],
            "orders": [self.orders, self.customers],
            "sales": [self.dashboard],
        }
        watch.subscribe(self._on_advance)
        self._loop = BackgroundLoop("eventgraph-live-views", self._heal)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def _on_advance(self, name: str, _position: int) -> None:
        for topic in self._by_projection.get(name, ()):
            topic.request_refresh()

    async def _heal(self) -> None:
        """Whatever a lost notification missed, a periodic refresh delivers."""
        while True:
            await asyncio.sleep(self._heal_interval)
            for topics in self._by_projection.values():
                for topic in topics:
                    topic.request_refresh()

    async def _load_products(self, skus: Sequence[Any]) -> list[tuple[Any, Row]]:
        return [(r["sku"], r) for r in await self._reads.products_by_sku(list(skus))]

    async def _load_orders(self, ids: Sequence[Any]) -> list[tuple[Any, Row]]:
        return [(r["order_id"], r) for r in await self._reads.orders_by_id(list(ids))]

    async def _load_customers(self, customers: Sequence[Any]) -> list[tuple[Any, Row]]:
        """Orders of these customers that changed since the last refresh (positions only
        grow: a change applied later always carries a higher position)."""
        rows = await self._reads.orders_changed_since(list(customers), self._customers_since)
        if rows:
            self._customers_since = max(self._customers_since, rows[-1]["position"])
        return [(r["customer_id"], r) for r in rows]

    def start_customer_feed_at(self, position: int) -> None:
        if not self.customers.subscribers:
            self._customers_since = position

    async def _load_dashboard(self, _keys: Sequence[Any]) -> list[tuple[Any, Row]]:
        return [("dashboard", await self._reads.dashboard_row())]

    async def watch(self, topic: Topic, key: Any, first: Row | None) -> AsyncGenerator[Row, None]:
        """The view of `key`: `first` (if it exists yet), then every newer one."""
        slot = Slot()
        with topic.subscribed(key, slot):
            if first is not None:
                slot.offer(key, first)
            topic.request_refresh()
            while True:
                yield await slot.next()
