"""Command handling against real PostgreSQL, with two handlers standing in for two processes
that share the database but not their in-memory state."""

from __future__ import annotations

import asyncio

import pytest

from application import commands
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
    await a.handle(commands.RegisterProduct(STAFF, "HOT", "Hot", "1.00", 2))
    await a.handle(
        commands.PlaceOrder(Actor("c1", "customer"), [("HOT", 2)])
    )  # a caches: 0 available
    await b.handle(
        commands.RestockProduct(STAFF, "HOT", 5)
    )  # b moves the stream on behind a's back
    placed = await a.handle(
        commands.PlaceOrder(Actor("c2", "customer"), [("HOT", 5)])
    )  # must see the restock
    assert placed.state.total == 5
    with pytest.raises(InsufficientStock):
        await b.handle(
            commands.PlaceOrder(Actor("c3", "customer"), [("HOT", 1)])
        )  # b's cache is stale too
    events = await store.read_stream("product-HOT")
    assert [(e.data["onHand"], e.data["reserved"]) for e in events[1:]] == [(2, 2), (7, 2), (7, 7)]


async def test_two_handlers_racing_on_one_product_never_oversell(store: EventStore) -> None:
    handlers = [shop(store), shop(store)]
    await handlers[0].handle(commands.RegisterProduct(STAFF, "RACE", "Race", "1.00", 40))

    async def buy(i: int) -> bool:
        try:
            await handlers[i % 2].handle(
                commands.PlaceOrder(Actor(f"c{i}", "customer"), [("RACE", 3)])
            )
            return True
        except InsufficientStock:
            return False

    outcomes = await asyncio.gather(*(buy(i) for i in range(24)))
    assert outcomes.count(True) == 13  # 13 * 3 = 39 of 40
    last = (await store.read_stream("product-RACE"))[-1]
    assert (last.data["onHand"], last.data["reserved"]) == (40, 39)
