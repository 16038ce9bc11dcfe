"""Fan-out between processes through `broadcaster`: each projector announces "projection K is
at position P" after it commits, and every process feeds what it hears to its watch, which
wakes read-your-writes waiters and refreshes live views.

broadcaster neither reconnects nor notices a dead backend (its Redis listener can die
silently), so this wrapper sends itself a heartbeat every second and treats three seconds of
silence, or any error, as a lost connection: it reconnects, then re-reads every projection's
position, which also refreshes every live view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from broadcaster import Broadcast

from projections.watch import ProjectionWatch
from support import metrics
from support.background import Backoff, reconnecting

log = logging.getLogger(__name__)

CHANNEL = "eventgraph.projections"


class Fanout:
    def __init__(
        self,
        url: str,
        watch: ProjectionWatch,
        heartbeat: float = 1.0,
        dead_after: float = 3.0,
        on_reconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.url = url
        self._watch = watch
        self._heartbeat = heartbeat
        self._dead_after = dead_after
        self._on_reconnect = on_reconnect or watch.refresh
        self._pending: dict[str, int] = {}
        self._latest: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._me = uuid.uuid4().hex[:8]
        self.connected = asyncio.Event()
        self.reconnects = 0
        # broadcaster raises whatever its backend raises: every failure is a lost connection
        self._loop = reconnecting(
            f"eventgraph-fanout via {self._safe_url()}", self._session, expected=(Exception,)
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def offer(self, name: str, position: int) -> None:
        """Announce a projection's progress to the other processes (the newest wins)."""
        if position > self._latest.get(name, 0):
            self._latest[name] = position
            self._pending[name] = position
            self._wake.set()

    async def _session(self, backoff: Backoff) -> None:
        broadcast = Broadcast(self.url)
        try:
            await broadcast.connect()
            async with broadcast.subscribe(CHANNEL) as subscriber:
                self.connected.set()
                metrics.FANOUT_CONNECTED.set(1)
                await self._on_reconnect()
                backoff.reset()
                tasks = [
                    asyncio.create_task(self._send(broadcast)),
                    asyncio.create_task(self._beat(broadcast)),
                ]
                try:
                    while True:
                        async with asyncio.timeout(self._dead_after):
                            event = await subscriber.get()
                        self._receive(event.message)
                finally:
                    for task in tasks:
                        task.cancel()
        except Exception:
            self.reconnects += 1
            metrics.FANOUT_RECONNECTS.inc()
            raise
        finally:
            self.connected.clear()
            metrics.FANOUT_CONNECTED.set(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(broadcast.disconnect(), 2)

    def _receive(self, message: str) -> None:
        if message.startswith("hb:"):
            # hb:<sender>:<name>:<position>;<name>:<position>;...
            _, _, rest = message[3:].partition(":")
            for entry in filter(None, rest.split(";")):
                self._watch.on_notification(entry)
        else:
            self._watch.on_notification(message)

    async def _beat(self, broadcast: Broadcast) -> None:
        """The heartbeat proves the connection alive and repeats this process's latest
        announcements, so that one missed while a peer was reconnecting arrives within a
        beat."""
        while True:
            latest = ";".join(f"{name}:{position}" for name, position in self._latest.items())
            await broadcast.publish(CHANNEL, f"hb:{self._me}:{latest}")
            await asyncio.sleep(self._heartbeat)

    async def _send(self, broadcast: Broadcast) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, {}
            try:
                for name, position in pending.items():
                    await broadcast.publish(CHANNEL, f"{name}:{position}")
            except Exception:
                for name, position in pending.items():
                    self.offer(name, position)
                raise

    def _safe_url(self) -> str:
        return self.url.split("@")[-1]
