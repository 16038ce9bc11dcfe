"""Live views: each subscriber of a view gets the current view first, then every newer one,
from one bounded slot where the newest view wins, so a slow subscriber never makes the
server's memory grow and always ends on the latest state.

One refresh per projection advance serves every subscriber in this process: the views of all
watched keys are read in one query and handed to each key's subscribers. What can be watched,
and how it is read, each read model declares (`LiveTopic`s in its module)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from typing import Any

import asyncpg

from projections.slice import LiveTopic, Loader, ReadModel, View
from projections.watch import ProjectionWatch
from support.background import BackgroundLoop
from support.mailbox import Mailbox

log = logging.getLogger(__name__)


class Slot(Mailbox[Any]):
    """One subscriber's mailbox: at most one view per key, the newest by its last change. A
    view whose content did not change since the last one sent is not sent again, however far
    its read model moved meanwhile."""

    def __init__(self) -> None:
        # A view changed at position 0 reflects no event: it is not sent (the dashboard of an
        # empty log waits for its first order).
        super().__init__(rank=lambda view: int(view.changed), floor=0)

    async def next(self) -> Any:
        view = await self.take()
        assert view is not None  # a slot is never closed
        return view


class Topic:
    """The subscribers of one kind of view, by key, and how to read their views."""

    def __init__(self, load: Loader, slot_key: Callable[[Hashable, Any], Hashable]):
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
    def __init__(
        self,
        pool: asyncpg.Pool,
        watch: ProjectionWatch,
        read_models: Sequence[ReadModel],
        heal_interval: float = 1.0,
    ):
        self._heal_interval = heal_interval
        self._topics: dict[LiveTopic, Topic] = {}
        self._by_projection: dict[str, list[Topic]] = {}
        for model in read_models:
            for spec in model.topics:
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
        while True:
            await asyncio.sleep(self._heal_interval)
            for topics in self._by_projection.values():
                for topic in topics:
                    topic.request_refresh()

    def start_feed_at(self, spec: LiveTopic, position: int) -> None:
        """A feed of changes (not of current views) that nobody watches yet begins at
        `position`, the read model's position now."""
        topic = self._topics[spec]
        start_at = getattr(topic.load, "start_at", None)
        if not topic.subscribers and start_at is not None:
            start_at(position)

    async def watch(
        self, spec: LiveTopic, key: Hashable, first: View | None
    ) -> AsyncGenerator[Any, None]:
        """The view of `key`: `first` (if it exists yet), then every newer one."""
        topic = self._topics[spec]
        slot = Slot()
        with topic.subscribed(key, slot):
            if first is not None:
                slot.offer(key, first)
            topic.request_refresh()
            while True:
                yield await slot.next()
