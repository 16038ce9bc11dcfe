"""The newest-wins mailbox: what a slow reader of a stream of versions holds. At most one item
per key is kept, the newest, so memory does not grow with a slow reader and the reader always
ends on the latest version; a version older than (or as old as) one already held or taken for
its key is dropped, so a reader never goes back in time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from support import metrics

V = TypeVar("V")


class Overflow(Exception):
    """More keys were waiting than the mailbox holds: the reader fell too far behind."""


class Mailbox(Generic[V]):
    def __init__(
        self, rank: Callable[[V], int], floor: int = -1, capacity: int | None = None
    ) -> None:
        """`rank(item)` orders the versions of one key (a log position, say); an item ranked
        at or below `floor` is never delivered. At most `capacity` keys wait at once: past
        it, `take` raises `Overflow` (memory stays bounded whatever the reader does)."""
        self._rank = rank
        self._floor = floor
        self._capacity = capacity
        self._pending: dict[Hashable, V] = {}
        self._order: list[tuple[int, int, Hashable]] = []
        """(rank, sequence, key) of what is pending, lowest rank first; an entry whose key
        now holds a newer item is stale and passed over."""
        self._sequence = itertools.count()
        self._taken: dict[Hashable, int] = {}
        self._ready = asyncio.Event()
        self._closed = False
        self._overflowed = False

    def offer(self, key: Hashable, item: V) -> None:
        rank = self._rank(item)
        if rank <= self._taken.get(key, self._floor):
            return
        held = self._pending.get(key)
        if held is None and self._capacity is not None and len(self._pending) >= self._capacity:
            self._overflowed = True
            self._ready.set()
            return
        if held is None or self._rank(held) < rank:
            if held is not None:
                metrics.LIVE_SUPERSEDED.inc()
            self._pending[key] = item
            heapq.heappush(self._order, (rank, next(self._sequence), key))
            if len(self._order) > 2 * len(self._pending) + 16:  # mostly stale: rebuild
                self._order = [
                    (self._rank(v), next(self._sequence), k) for k, v in self._pending.items()
                ]
                heapq.heapify(self._order)
            self._ready.set()

    def forget_through(self, rank: int) -> None:
        """No item ranked at or below `rank` will be offered again: stop remembering the keys
        taken at or below it (a feed of ever new keys keeps bounded memory)."""
        self._floor = max(self._floor, rank)
        self._taken = {key: taken for key, taken in self._taken.items() if taken > rank}

    def close(self) -> None:
        """No more offers: `take` hands out what is held, then None."""
        self._closed = True
        self._ready.set()

    async def take(self) -> V | None:
        """The held item of lowest rank (the oldest change first); None once closed and empty.
        Raises `Overflow` once more keys waited than the capacity."""
        if self._overflowed:
            raise Overflow(f"more than {self._capacity} items were waiting")
        while not self._pending:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
            if self._overflowed:
                raise Overflow(f"more than {self._capacity} items were waiting")
        while True:
            rank, _, key = heapq.heappop(self._order)
            item = self._pending.get(key)
            if item is not None and self._rank(item) == rank:
                break
        del self._pending[key]
        self._taken[key] = self._rank(item)
        return item
