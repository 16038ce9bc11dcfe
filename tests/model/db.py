"""The model-based test's direct access to the server's databases: reads, the replay check
of every registered read model, and the order-expiry reaction on a virtual clock, from an
event loop of their own in a thread (Hypothesis rules are synchronous)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import asyncpg

from application.expiry import OrderExpiry
from application.reactions import ReactionRunner
from application.shop import Shop
from eventgraph.runtime import personal_data, shop_upcasters
from eventstore.events import RecordedEvent
from eventstore.notify import CoalescingNotifier, Signal
from eventstore.personal import MasterKey
from eventstore.store import EventStore, init_connection
from projections import all_projections
from projections.base import Projection
from tests.kit import readmodels
from tests.kit.database import plaintext_in
from tests.kit.server import MASTER_KEY

T = TypeVar("T")


def scratch(projection: Projection) -> str:
    """The schema a read model is replayed into, after every step (one each, as generations
    are: two projections may have tables of the same name)."""
    return f"model_replay_{projection.name}"


class VirtualClock:
    """The time this process's order-expiry runner (and the expiries it commands) decide by:
    held at one instant while it runs, so that a deadline is met exactly."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Db:
    """Direct reads of the server's database, and the order-expiry reaction on a virtual clock,
    from a loop of their own in a thread."""

    def __init__(self, url: str, read_url: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def connect(to: str) -> asyncpg.Pool:
            pool = await asyncpg.create_pool(to, min_size=1, max_size=4, init=init_connection)
            assert pool is not None
            return pool

        self.log: asyncpg.Pool = self.run(connect(url))
        """The event log's database."""
        self.pool: asyncpg.Pool = self.run(connect(read_url)) if read_url else self.log
        """The read side's (the same unless the server runs with a read database)."""
        # Opens what the server seals (its master key is the test servers' own).
        self.store = EventStore(
            self.log, shop_upcasters(), personal=personal_data([MasterKey.from_text(MASTER_KEY)])
        )
        self._events: list[RecordedEvent] = []
        self._replayed_to = 0
        self._scratch = False
        self.clock = VirtualClock()
        self.run(self._start_expiry(url))

    async def _start_expiry(self, url: str) -> None:
        """The product's order-expiry runner over the server's database, commanding through a
        Shop of its own; its appends wake the server's projectors as the server's own do."""
        signal = Signal()
        self._notifier = CoalescingNotifier(self.log, signal)
        self._notifier.start()
        store = EventStore(self.log, shop_upcasters(), self._notifier, self.store.personal)
        shop = Shop(store, self.clock)
        self.expiry = ReactionRunner(OrderExpiry(), url, store, shop, signal, clock=self.clock)
        self._expiry_conn: asyncpg.Connection = await asyncpg.connect(url)
        await init_connection(self._expiry_conn)

    def expire_due(self, at: datetime | None) -> int:
        """Run order expiry at `at` (None: at the latest deadline pending): follow the log to
        its head, then fire every timer due. How many timers fired."""
        return self.run(self._expire_due(at))

    async def _expire_due(self, at: datetime | None) -> int:
        conn = self._expiry_conn
        head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.events")
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            while await self.expiry.step(conn):
                pass
            seen = await conn.fetchval(
                "SELECT position FROM eventgraph.reactions WHERE name = $1", self.expiry.name
            )
            if seen >= head:  # (a transaction still open elsewhere can hold the log back)
                break
            assert asyncio.get_running_loop().time() < deadline, "expiry never reached the head"
            await asyncio.sleep(0.01)
        if at is None:
            at = await conn.fetchval(
                "SELECT max(due_at) FROM eventgraph.timers WHERE reaction = $1", self.expiry.name
            )
            if at is None:
                return 0
        self.clock.now = at
        fired = 0
        while count := await self.expiry.fire_due(conn):
            fired += count
        return fired

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)

    def close(self) -> None:
        if self._scratch:
            for projection in all_projections():
                self.run(self.pool.execute(f"DROP SCHEMA {scratch(projection)} CASCADE"))
        self.run(self._expiry_conn.close())
        self.run(self._notifier.stop())
        self.run(self.pool.close())
        if self.log is not self.pool:
            self.run(self.log.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def scan(self, needles: list[str]) -> list[str]:
        """`needles` found in any table of the log's database or the read side's."""
        found = []
        for pool in {id(p): p for p in (self.log, self.pool)}.values():
            async with pool.acquire() as proxy:
                found += await plaintext_in(cast(asyncpg.Connection, proxy), needles)
        return found

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of the read side."""
        return [dict(r) for r in self.run(self.pool.fetch(sql, *args))]

    def log_fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of the event log's database (events, reactions, timers)."""
        return [dict(r) for r in self.run(self.log.fetch(sql, *args))]

    def head_count(self) -> int:
        """The events in the log, but those the server's low-stock reaction appends by itself
        (a moment after the command that took the stock down, so maybe during a step)."""
        return int(
            self.run(
                self.log.fetchval(
                    "SELECT count(*) FROM eventgraph.events WHERE type <> 'LowStockReached'"
                )
            )
        )

    def replay_matches(self) -> list[str]:
        """Replay the whole log through every registered projection into empty tables; the
        tables (every one each read model has, tests/kit/readmodels.py) whose rows differ
        from the live read model's."""
        return self.run(self._replay_differences())

    async def _replay_differences(self) -> list[str]:
        # The log only grows (and is read in commit-safe order): read what is new since the
        # last step, up to the head the read models have reached. A hole below it (an append
        # rolled back: a group of appends whose idempotency key was used before) holds a
        # reader back until it is proven permanent, a moment later. The scratch tables are
        # made once, as a rebuild makes a generation; each replay fills them inside a
        # transaction that is rolled back, so they are empty again for the next (DDL at
        # every step would cost more than the rest of the step).
        head = await self.log.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.events")
        deadline = asyncio.get_running_loop().time() + 30
        while self._replayed_to < head:
            if batch := await self.store.read_all(self._replayed_to, 5_000):
                self._events.extend(batch)
                self._replayed_to = batch[-1].position
                continue
            assert asyncio.get_running_loop().time() < deadline, "the log's head is not readable"
            await asyncio.sleep(0.01)
        async with self.pool.acquire() as proxy:
            conn = cast(asyncpg.Connection, proxy)  # what a projection applies events with
            if not self._scratch:
                for projection in all_projections():
                    schema = scratch(projection)
                    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                    await conn.execute(f"CREATE SCHEMA {schema}")
                    await conn.execute(projection.create_tables(schema))
                    if indexes := projection.create_indexes(schema):
                        await conn.execute(indexes)
                self._scratch = True
            replay = conn.transaction()
            await replay.start()
            try:
                for projection in all_projections():
                    await projection.apply(conn, scratch(projection), self._events)
                live = await readmodels.dump(conn)
                fresh = await readmodels.dump(conn, scratch)
            finally:
                await replay.rollback()
        return [table for table, rows in live.items() if rows != fresh[table]]
