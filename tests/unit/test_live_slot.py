"""A subscriber's slot holds at most one view per key, the newest, whatever the backlog."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from projections.live import Slot


@dataclass(frozen=True)
class View:
    position: int
    changed: int


def view(position: int, read_at: int | None = None) -> View:
    """A view last changed at `position`, read when its read model was at `read_at`."""
    return View(position if read_at is None else read_at, position)


async def test_a_view_read_again_unchanged_is_not_sent_again() -> None:
    slot = Slot()
    slot.offer("k", view(5, read_at=7))
    assert (await slot.next()).position == 7
    slot.offer("k", view(5, read_at=9))  # the read model moved on; this view did not
    slot.offer("k", view(8, read_at=12))
    sent = await slot.next()
    assert (sent.changed, sent.position) == (8, 12)
    assert not slot._pending


async def test_a_slow_subscriber_holds_one_view_per_key_and_gets_the_newest() -> None:
    slot = Slot()
    for position in range(1, 10_001):
        slot.offer("sku", view(position))
    assert len(slot._pending) == 1
    assert (await slot.next()).position == 10_000


async def test_positions_never_go_back_or_repeat() -> None:
    slot = Slot()
    slot.offer("k", view(5))
    assert (await slot.next()).position == 5
    slot.offer("k", view(5))
    slot.offer("k", view(3))
    assert slot._pending == {}
    slot.offer("k", view(7))
    slot.offer("k", view(6))
    assert (await slot.next()).position == 7


async def test_views_of_several_keys_come_oldest_change_first() -> None:
    slot = Slot()
    slot.offer("b", view(9))
    slot.offer("a", view(4))
    slot.offer("a", view(8))
    assert [(await slot.next()).position for _ in range(2)] == [8, 9]
    waiter = asyncio.ensure_future(slot.take())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    slot.offer("a", view(10))
    assert (await asyncio.wait_for(waiter, 1)).position == 10


async def test_views_replaced_unsent_are_counted_as_superseded_and_timed_when_sent() -> None:
    from prometheus_client import REGISTRY

    from support.metrics import EVENT_TIMES

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    superseded = sample("eventgraph_live_superseded_total")
    timed = sample("eventgraph_live_delivery_seconds_count")
    EVENT_TIMES.applied(10**15, 0.0)  # a batch far ahead of anything else in this process
    try:
        slot = Slot()
        for position in range(10**15 - 4, 10**15 + 1):
            slot.offer("sku", view(position))
        await slot.next()
    finally:
        EVENT_TIMES.__init__()  # type: ignore[misc]  # forget it again
    assert sample("eventgraph_live_superseded_total") - superseded == 4
    assert sample("eventgraph_live_delivery_seconds_count") - timed == 1
