"""A live topic's bookkeeping: what it reads after what, and what each subscriber is offered.
The loader here is a table in memory with the loader's contract (rows changed after a
position), so that a read can be held in flight at a chosen moment; tests/e2e cover the
same paths against PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import pytest

from projections.live import MAX_WAITING, FellBehind, Slot, Topic
from projections.slice import Changes


@dataclass(frozen=True)
class View:
    key: str
    changed: int
    position: int


class Table:
    """Rows, each under a key (its own, or a feed's: a customer's orders), with the position
    of its last change, and the model's position."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, int]] = {}
        self.position = 0
        self.reads: list[tuple[list[Hashable], int, dict[Hashable, int]]] = []
        self.hold: asyncio.Event | None = None
        self.page = 1_000

    def change(self, row: str, key: str | None = None) -> None:
        self.position += 1
        self.rows[row] = (key or row, self.position)

    async def load(
        self, watched: Sequence[Hashable], since: int, fresh: Sequence[tuple[Hashable, int]]
    ) -> Changes:
        starts = {k: since for k in watched} | dict(fresh)
        self.reads.append((list(watched), since, dict(fresh)))
        at = self.position  # the snapshot is taken when the read starts
        found = sorted(
            (changed, key)
            for key, changed in self.rows.values()
            if key in starts and starts[key] < changed <= at
        )
        if self.hold is not None:
            await self.hold.wait()
        if len(found) > self.page:  # a page limit: read up to the last row returned
            found = found[: self.page]
            at = found[-1][0]
            return Changes(at, [(k, View(k, c, at)) for c, k in found], complete=False)
        return Changes(at, [(key, View(key, changed, at)) for changed, key in found])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_refresh_reads_only_what_changed_since_the_last() -> None:
    table = Table()
    topic = Topic(table.load, lambda key, _view: key)
    slots = {k: Slot(topic.low_water) for k in ("A", "B")}
    table.change("A")
    table.change("B")
    with topic.subscribed("A", slots["A"], 0), topic.subscribed("B", slots["B"], 0):
        topic.request_refresh()
        await settle()
        assert {(await slots[k].next()).changed for k in "AB"} == {1, 2}
        table.change("A")
        topic.request_refresh()
        await settle()
        watched, since, fresh = table.reads[-1]
        assert (sorted(watched), since, fresh) == (["A", "B"], 2, {})  # no full re-read
        assert (await slots["A"].next()).changed == 3
        assert not slots["B"]._pending  # B did not change: nothing for its subscriber


async def test_a_key_watched_during_a_read_in_flight_misses_no_change() -> None:
    table = Table()
    topic = Topic(table.load, lambda key, _view: key)
    a, b = Slot(topic.low_water), Slot(topic.low_water)
    table.change("A")  # position 1; B's subscriber reads its first view here
    table.change("B")  # position 2
    with topic.subscribed("A", a, 0):
        table.hold = asyncio.Event()
        topic.request_refresh()
        await settle()  # a read for A alone is in flight, its snapshot at position 2
        with topic.subscribed("B", b, 1):  # B is watched from its first view, at 1
            topic.request_refresh()  # as LiveViews.watch does
            table.hold.set()
            table.hold = None
            await settle()
            # the read in flight moved the topic to 2 without B; B's own start still counts
            assert topic.since == 2
            assert (await asyncio.wait_for(b.next(), 5)).changed == 2


async def test_a_second_subscriber_of_a_key_costs_the_first_nothing() -> None:
    table = Table()
    topic = Topic(table.load, lambda key, _view: key)
    first, second = Slot(topic.low_water), Slot(topic.low_water)
    with topic.subscribed("A", first, 0):
        topic.request_refresh()
        await settle()  # read up to 0: nothing yet
        table.change("A")  # position 1, not read by the topic yet ...
        with topic.subscribed("A", second, 1):  # ... but already in the second one's first view
            topic.request_refresh()
            await settle()
            assert (await asyncio.wait_for(first.next(), 5)).changed == 1


async def test_a_page_cut_below_the_topics_position_reads_on_for_the_key_behind() -> None:
    table = Table()
    topic = Topic(table.load, lambda _key, view: view.changed)  # a feed: a slot per change
    table.page = 2
    for order in ("o1", "o2", "o3"):
        table.change(order, "old")  # a feed's rows at positions 1, 2, 3
    table.change("other")  # position 4
    watcher = Slot(topic.low_water)
    with topic.subscribed("other", watcher, 0):
        topic.request_refresh()
        await settle()
        assert topic.since == 4
        late = Slot(topic.low_water)
        with topic.subscribed("old", late, 0):  # read from 0 in pages of 2: 1, 2 then 3
            topic.request_refresh()
            await settle()
            got = [(await asyncio.wait_for(late.next(), 5)).changed for _ in range(3)]
            assert got == [1, 2, 3]


async def test_a_feed_forgets_keys_it_will_not_see_again() -> None:
    table = Table()
    topic = Topic(table.load, lambda _key, view: view.changed)  # one slot key per change
    slot = Slot(topic.low_water)
    with topic.subscribed("feed", slot, 0):
        for _ in range(3_000):
            table.change("order", "feed")
            topic.request_refresh()
            await settle()
            await asyncio.wait_for(slot.next(), 5)
        assert len(slot._taken) <= 2 * Slot.FORGET_AFTER


async def test_a_subscriber_too_far_behind_is_told_to_subscribe_again() -> None:
    slot = Slot()
    for changed in range(1, MAX_WAITING + 2):
        slot.offer(changed, View("k", changed, changed))
    with pytest.raises(FellBehind):
        await slot.next()


def test_the_low_water_mark_covers_reads_in_flight() -> None:
    topic: Topic = Topic(lambda *_: None, lambda key, _view: key)  # type: ignore[arg-type, return-value]
    topic.since = 10
    topic._reading = {"x": 4}
    topic._fresh = {"y": 7}
    assert topic.low_water() == 4
