"""Live views: each subscriber of a view gets the current view first, then every newer one,
from one bounded slot where the newest view wins, so a slow subscriber never makes the
server's memory grow and always ends on the latest state.

One refresh per projection advance serves every subscriber in this process: the views of the
watched keys that changed since the last refresh are read in one query and handed to each
key's subscribers; nothing happens for a view that did not change. What can be watched,
and how it is read, each read model declares (`LiveTopic`s in its module; a view over several
tables or read models, a `JoinedTopic`: projections/joined.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from typing import Any

import asyncpg

from projections.joined import JoinedSubscribers, JoinedTopic
from projections.slice import LiveTopic, Loader, ReadModel, View
from projections.watch import ProjectionWatch
from support import metrics
from support.background import BackgroundLoop
from support.mailbox import Mailbox, Overflow

log = logging.getLogger(__name__)


MAX_WAITING = 10_000
"""Views one subscriber may have waiting (a feed's distinct orders): past it, its
subscription ends with `FellBehind`, and the client subscribes again."""


class FellBehind(Exception):
    """A subscriber read its views so slowly that more than `MAX_WAITING` were waiting.
    `position`: the position of the last view it was given (a feed resumes after it)."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class Slot(Mailbox[Any]):
    """One subscriber's mailbox: at most one view per key, the newest by its last change. A
    view whose content did not change since the last one sent is not sent again, however far
    its read model moved meanwhile."""

    FORGET_AFTER = 1_024

    def __init__(
        self, low_water: Callable[[], int] = lambda: 0, floor: int = 0, timed: bool = True
    ) -> None:
        # A view changed at position 0 reflects no event: it is not sent (the dashboard of an
        # empty log waits for its first order). A joined view's first is sent even so (-1).
        super().__init__(rank=lambda view: int(view.changed), floor=floor, capacity=MAX_WAITING)
        self._low_water = low_water
        self._forget_at = self.FORGET_AFTER
        self._timed = timed
        """A view's `changed` is the position of an event (not a joined view's sum of read
        models' positions), whose delivery the live-latency metric times."""

    async def next(self) -> Any:
        try:
            view = await self.take()
        except Overflow:
            raise FellBehind(
                f"more than {MAX_WAITING} views were waiting to be sent: subscribe again"
            ) from None
        assert view is not None  # a slot is never closed
        if self._timed:
            metrics.EVENT_TIMES.delivered(int(view.changed))
        if len(self._taken) > self._forget_at:  # a feed: keys it will not see again
            self.forget_through(self._low_water())
            self._forget_at = max(self.FORGET_AFTER, 2 * len(self._taken))
        return view


class Topic:
    """The subscribers of one kind of view, by key, and what has been read for them.

    Every watched key has been read up to `since`: a refresh reads only what changed after it
    (by the read model's index on position), so its cost follows what changed, not what is
    watched, and a view that did not change reaches no subscriber. A key just subscribed to
    is read from its own start (the position of the view its subscriber already holds) in the
    next refresh, then joins the others: a refresh in flight when it arrived cannot make it
    miss a change."""

    def __init__(self, load: Loader, slot_key: Callable[[Hashable, Any], Hashable]):
        self.load = load
        self.slot_key = slot_key
        self.subscribers: dict[Any, set[Slot]] = {}
        self.since = 0
        self._fresh: dict[Any, int] = {}
        self._reading: dict[Any, int] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._again = False

    def request_refresh(self) -> None:
        if self._refreshing is not None:
            self._again = True
            return
        self._refreshing = asyncio.create_task(self._refresh())

    def low_water(self) -> int:
        """Every view this topic will offer from now on changed after this position."""
        return min([self.since, *self._fresh.values(), *self._reading.values()])

    def _start_from(self, key: Any, position: int) -> None:
        self._fresh[key] = min(self._fresh.get(key, position), position)

    async def _refresh(self) -> None:
        try:
            while True:
                self._again = False
                fresh = {k: s for k, s in self._fresh.items() if k in self.subscribers}
                self._fresh, self._reading = {}, fresh
                watched = [k for k in self.subscribers if k not in fresh]
                try:
                    if watched or fresh:
                        await self._read(watched, fresh)
                except BaseException:  # cancelled: the keys just watched still need reading
                    for key, start in self._reading.items():
                        self._start_from(key, start)
                    raise
                finally:
                    self._reading = {}
                if not self._again:
                    return
        finally:
            self._refreshing = None

    async def _read(self, watched: list[Any], fresh: dict[Any, int]) -> None:
        try:
            found = await self.load(watched, self.since, list(fresh.items()))
        except Exception as exc:  # the periodic refresh heals a failed one
            log.warning("live view refresh failed: %s", exc)
            for key, start in fresh.items():
                self._start_from(key, start)
            return
        for key, view in found.views:
            for slot in list(self.subscribers.get(key, ())):
                slot.offer(self.slot_key(key, view), view)
        if not found.complete:  # a page limit: read on from where it stopped
            self._again = True
        # Watched keys are now read up to `since`; a key just watched, up to where this
        # read went or its own start: one still behind `since` stays apart until it caught up.
        since = max(self.since, found.position)
        for key, start in fresh.items():
            read_to = max(start, found.position)
            if read_to < since:
                self._start_from(key, read_to)
        self.since = since

    @contextlib.contextmanager
    def subscribed(self, key: Any, slot: Slot, start: int) -> Any:
        if key in self.subscribers or key in self._reading:
            # Its earlier subscribers have been read up to `since` (or their own start): a
            # re-read from the new subscriber's start alone would skip what lies between.
            start = min(start, self.since, self._reading.get(key, start))
        self.subscribers.setdefault(key, set()).add(slot)
        self._start_from(key, start)
        try:
            yield
        finally:
            slots = self.subscribers.get(key)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self.subscribers[key]
                    self._fresh.pop(key, None)


class LiveViews:
    def __init__(
        self,
        pool: asyncpg.Pool,
        watch: ProjectionWatch,
        read_models: Sequence[ReadModel],
        heal_interval: float = 1.0,
    ):
        self._heal_interval = heal_interval
        self._topics: dict[LiveTopic, Topic] = {}
        self._joined: dict[JoinedTopic, JoinedSubscribers] = {}
        self._by_projection: dict[str, list[Topic | JoinedSubscribers]] = {}
        for model in read_models:
            for spec in model.topics:
                if isinstance(spec, JoinedTopic):  # refreshed when any model it reads moves
                    joined = self._joined[spec] = JoinedSubscribers(spec, pool)
                    for name in spec.models:
                        self._by_projection.setdefault(name, []).append(joined)
                    continue
                topic = Topic(spec.loader(pool), spec.slot_key)
                self._topics[spec] = topic
                self._by_projection.setdefault(model.name, []).append(topic)
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
        every = list({id(t): t for ts in self._by_projection.values() for t in ts}.values())
        while True:
            await asyncio.sleep(self._heal_interval)
            for topic in every:
                topic.request_refresh()

    async def _watch_joined(self, spec: JoinedTopic, key: str) -> AsyncGenerator[Any, None]:
        joined = self._joined[spec]
        slot = Slot(floor=-1, timed=False)  # its first view, empty or not, even of an empty log
        with joined.subscribed(key, slot):
            joined.request_refresh()
            while True:
                yield await slot.next()

    async def feed(
        self, spec: LiveTopic, key: Hashable, after: int | None, now: int
    ) -> AsyncGenerator[Any, None]:
        """A feed of `key`'s changes: with `after`, first the current view of everything that
        changed after it, oldest change first, then live; without, live from `now`.

        The catch-up is this subscriber's own, read a page at a time as it takes them (so a
        resume after a million changes holds one page, and cannot overflow the live slot);
        each page goes by the read model's index on position. A row's position only grows,
        so a row that changes again while the pages are read turns up again in a later page
        with its newer view, and nothing between pages is missed. The last page ends at the
        read model's position in that page's snapshot; live goes on from exactly there, and
        the positions sent strictly increase across the handover. `FellBehind` carries the
        position of the last view given, which is where the subscriber resumes."""
        load = self._topics[spec].load
        start = now
        sent = now if after is None else after
        try:
            if after is not None:
                start = after
                while True:
                    changes = await load([], 0, [(key, start)])
                    for _, view in changes.views:
                        yield view
                        sent = view.position
                    start = max(start, changes.position)
                    if changes.complete:
                        break
            async with contextlib.aclosing(self.watch(spec, key, None, start)) as views:
                async for view in views:
                    yield view
                    sent = view.position
        except FellBehind as exc:
            raise FellBehind(str(exc), sent) from None

    async def watch(
        self, spec: LiveTopic | JoinedTopic, key: Hashable, first: View | None, start: int = 0
    ) -> AsyncGenerator[Any, None]:
        """The view of `key`: `first` (if it exists yet), then every one that changed after
        it (after `start`, with no `first`: a feed from now on, or a view not there yet).
        A joined topic reads the first view itself (`first` and `start` are not used)."""
        if isinstance(spec, JoinedTopic):
            async with contextlib.aclosing(self._watch_joined(spec, str(key))) as views:
                async for view in views:
                    yield view
            return
        topic = self._topics[spec]
        # A feed (no first view) starts after `start`: what others' reads bring from before
        # it is not for this subscriber.
        slot = Slot(topic.low_water, floor=0 if first is not None else start)
        with topic.subscribed(key, slot, first.position if first is not None else start):
            if first is not None:
                slot.offer(key, first)
            topic.request_refresh()
            while True:
                yield await slot.next()
