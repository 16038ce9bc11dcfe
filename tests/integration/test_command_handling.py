"""Command handling against real PostgreSQL, with two handlers standing in for two processes
that share the database but not their in-memory state."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from application.orders import PlaceOrder
from application.products import RegisterProduct, RestockProduct
from application.shop import Shop
from domain.errors import InsufficientStock
from domain.upcasters import UPCASTERS
from domain.values import Actor
from eventstore.store import EventStore
from eventstore.upcasting import UpcasterRegistry

STAFF = Actor("sam", "staff")


def shop(store: EventStore) -> Shop:
    registry = UpcasterRegistry()
    for event_type, version, upcaster in UPCASTERS:
        registry.register(event_type, version, upcaster)
    return Shop(EventStore(store.pool, registry))


async def test_a_stale_cached_state_never_wrongly_refuses_or_oversells(store: EventStore) -> None:
    a, b = shop(store), shop(store)
    await a.handle(RegisterProduct(STAFF, "HOT", "Hot", "1.00", 2))
    await a.handle(PlaceOrder(Actor("c1", "customer"), [("HOT", 2)]))  # a caches: 0 available
    await b.handle(RestockProduct(STAFF, "HOT", 5))  # b moves the stream on behind a's back
    placed = await a.handle(
        PlaceOrder(Actor("c2", "customer"), [("HOT", 5)])
    )  # must see the restock
    assert placed.state.total == 5
    with pytest.raises(InsufficientStock):
        await b.handle(PlaceOrder(Actor("c3", "customer"), [("HOT", 1)]))  # b's cache is stale too
    events = await store.read_stream("product-HOT")
    assert [(e.data["onHand"], e.data["reserved"]) for e in events[1:]] == [(2, 2), (7, 2), (7, 7)]


async def test_two_handlers_racing_on_one_product_never_oversell(store: EventStore) -> None:
    handlers = [shop(store), shop(store)]
    await handlers[0].handle(RegisterProduct(STAFF, "RACE", "Race", "1.00", 40))

    async def buy(i: int) -> bool:
        try:
            await handlers[i % 2].handle(PlaceOrder(Actor(f"c{i}", "customer"), [("RACE", 3)]))
            return True
        except InsufficientStock:
            return False

    outcomes = await asyncio.gather(*(buy(i) for i in range(24)))
    assert outcomes.count(True) == 13  # 13 * 3 = 39 of 40
    last = (await store.read_stream("product-RACE"))[-1]
    assert (last.data["onHand"], last.data["reserved"]) == (40, 39)


async def _placed_in(store: EventStore) -> tuple[int, int]:
    """(orders placed, transactions they were appended in)."""
    row = await store.pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT transaction_id::text) AS t"
        " FROM eventgraph.events WHERE type = 'OrderPlaced'"
    )
    assert row is not None
    return row["n"], row["t"]


async def test_orders_racing_on_one_product_are_appended_in_groups_and_never_oversell(
    store: EventStore,
) -> None:
    one = shop(store)
    await one.handle(RegisterProduct(STAFF, "FLASH", "Flash", "1.00", 50))

    async def buy(i: int) -> int | None:
        try:
            placed = await one.handle(PlaceOrder(Actor(f"c{i}", "customer"), [("FLASH", 1)]))
        except InsufficientStock:
            return None
        assert placed.state.lines[0].quantity == 1
        assert placed.events[0].stream_id == f"order-{placed.state.order_id}"
        return placed.position

    positions = await asyncio.gather(*(buy(i) for i in range(60)))
    succeeded = [p for p in positions if p is not None]
    assert len(succeeded) == 50 and len(set(succeeded)) == 50
    placed, transactions = await _placed_in(store)
    assert placed == 50
    assert transactions < 10  # appended together, not one transaction per order
    events = await store.read_stream("product-FLASH")
    assert [e.stream_version for e in events] == list(range(1, 52))
    assert (events[-1].data["onHand"], events[-1].data["reserved"]) == (50, 50)


async def test_a_refusal_in_a_group_fails_only_its_own_command(store: EventStore) -> None:
    one = shop(store)
    await one.handle(RegisterProduct(STAFF, "MIX", "Mix", "1.00", 10))
    wanted = [1, 1, 100, 1, 1, 1, 100, 1]

    async def buy(i: int, quantity: int) -> str:
        try:
            await one.handle(PlaceOrder(Actor(f"c{i}", "customer"), [("MIX", quantity)]))
        except InsufficientStock:
            return "refused"
        return "placed"

    outcomes = await asyncio.gather(*(buy(i, q) for i, q in enumerate(wanted)))
    assert outcomes == ["refused" if q == 100 else "placed" for q in wanted]
    placed, transactions = await _placed_in(store)
    assert placed == 6 and transactions < 6
    last = (await store.read_stream("product-MIX"))[-1]
    assert (last.data["onHand"], last.data["reserved"]) == (10, 6)


async def test_a_retried_command_in_the_same_group_gets_the_first_result(
    store: EventStore,
) -> None:
    one = shop(store)
    await one.handle(RegisterProduct(STAFF, "KEY", "Key", "1.00", 100))
    alice = Actor("alice", "customer")

    def order(i: int) -> PlaceOrder:
        if i in (3, 5, 8):  # a client retrying while its first try is still waiting
            return PlaceOrder(alice, [("KEY", 2)], idempotency_key="retry-1")
        return PlaceOrder(Actor(f"c{i}", "customer"), [("KEY", 1)])

    results = await asyncio.gather(*(one.handle(order(i)) for i in range(12)))
    retried = {results[i].state.order_id for i in (3, 5, 8)}
    assert len(retried) == 1
    assert sum(r.replayed for r in results) == 2
    placed, _ = await _placed_in(store)
    assert placed == 10  # nine orders of one and the retried order once
    last = (await store.read_stream("product-KEY"))[-1]
    assert last.data["reserved"] == 11


async def test_a_caller_gone_while_waiting_in_a_group_abandons_no_one(store: EventStore) -> None:
    one = shop(store)
    await one.handle(RegisterProduct(STAFF, "GONE", "Gone", "1.00", 100))
    tasks = [
        asyncio.create_task(one.handle(PlaceOrder(Actor(f"c{i}", "customer"), [("GONE", 1)])))
        for i in range(20)
    ]
    await asyncio.sleep(0)  # every command has started: the first appends, the rest wait
    for task in tasks[5:10]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    finished = [r for r in done if not isinstance(r, BaseException)]
    assert len(finished) >= 15
    placed, _ = await _placed_in(store)
    last = (await store.read_stream("product-GONE"))[-1]
    assert last.data["reserved"] == placed >= 15


class LosesTheReply(EventStore):
    """The log on real PostgreSQL, except that the first group commit's reply is lost after
    the commit (the connection dropped around it): written, but its caller cannot know."""

    lost = False

    async def append_together(self, appends: Any) -> Any:
        results = await super().append_together(appends)
        if not self.lost:
            self.lost = True
            raise asyncpg.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        return results


async def test_a_group_whose_outcome_is_unknown_is_never_applied_twice(store: EventStore) -> None:
    registry = UpcasterRegistry()
    for event_type, version, upcaster in UPCASTERS:
        registry.register(event_type, version, upcaster)
    one = Shop(LosesTheReply(store.pool, registry))
    await one.handle(RegisterProduct(STAFF, "LOST", "Lost", "1.00", 0))

    async def restock(n: int) -> str:
        try:
            await one.handle(RestockProduct(STAFF, "LOST", n))
        except asyncpg.ConnectionDoesNotExistError:
            return "unknown"
        return "ok"

    outcomes = await asyncio.gather(*(restock(n) for n in (1, 2, 4, 8)))
    assert "unknown" in outcomes  # the group whose reply was lost
    events = await store.read_stream("product-LOST")
    restocked = [e.data["quantity"] for e in events[1:]]
    assert sorted(restocked) == [1, 2, 4, 8]  # each applied once, whatever its caller heard
    assert events[-1].data["onHand"] == 15
