"""What each projection has applied, as this process knows it, and waiting for a position
(read your own writes). Waiters cost no query each: they are woken when the position moves,
which the local projector reports directly and other processes' projectors through the
fan-out (eventgraph/fanout.py); one poll per process catches whatever that missed.

What arrives through the fan-out is a hint, never a fact: anyone who can publish on the broker
(a shared Redis, a NOTIFY on the database) could announce `orders:1000000000000000`, and a
watch that believed it would wake every `atLeast` waiter at once and serve stale reads until
restart. A hint only makes the watch read the checkpoints back from the database, at once;
positions come from that read (or from this process's own projector), nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable

import asyncpg

from support.background import BackgroundLoop

log = logging.getLogger(__name__)


class ProjectionWatch:
    def __init__(self, pool: asyncpg.Pool, poll_interval: float = 0.5) -> None:
        self._pool = pool
        self._poll_interval = poll_interval
        self._positions: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[int, int, asyncio.Future[None]]]] = {}
        self._tiebreak = itertools.count()
        self._loop = BackgroundLoop("eventgraph-projection-watch", self._poll)
        self._listeners: list[Callable[[str, int], None]] = []
        self._hint = asyncio.Event()
        self.hints = 0

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def position(self, name: str) -> int:
        return self._positions.get(name, 0)

    def subscribe(self, listener: Callable[[str, int], None]) -> None:
        """`listener(name, position)` on every advance."""
        self._listeners.append(listener)

    def advance(self, name: str, position: int) -> None:
        if position <= self._positions.get(name, 0):
            return
        self._positions[name] = position
        waiters = self._waiters.get(name, [])
        while waiters and waiters[0][0] <= position:
            _, _, future = heapq.heappop(waiters)
            if not future.done():
                future.set_result(None)
        for listener in self._listeners:
            listener(name, position)

    def on_notification(self, payload: str) -> None:
        """Another process says projection `name` reached a position beyond ours: read the
        checkpoints back (see the module's docstring)."""
        name, _, position = payload.rpartition(":")
        digits = position.isascii() and position.isdigit() and len(position) <= 16
        if name and digits and int(position) > self.position(name):
            self.hints += 1
            self._hint.set()

    async def wait(self, name: str, position: int, seconds: float) -> None:
        """Return once `name` has applied everything up to `position`; TimeoutError after
        `seconds`."""
        if self.position(name) >= position:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters.setdefault(name, []), (position, next(self._tiebreak), future))
        try:
            async with asyncio.timeout(seconds):
                await future
        except TimeoutError:
            raise TimeoutError(
                f"the {name} read model had not reached position {position}"
                f" after {seconds:g}s (it is at {self.position(name)})"
            ) from None
        finally:
            if not future.done():
                future.cancel()
            waiters = self._waiters.get(name)
            if waiters and any(f is future for _, _, f in waiters):
                self._waiters[name] = [w for w in waiters if w[2] is not future]
                heapq.heapify(self._waiters[name])

    async def refresh(self) -> None:
        for row in await self._pool.fetch("SELECT name, position FROM eventgraph.projections"):
            self.advance(row["name"], row["position"])

    async def _poll(self) -> None:
        """Read the checkpoints every poll interval, and at once after a hint."""
        while True:
            self._hint.clear()
            try:
                await self.refresh()
            except Exception as exc:  # polling is the fallback: keep it alive
                log.warning("could not read projection positions: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._hint.wait()
