"""Wake-ups for readers of the log. A wake-up is a hint, never data: readers always read the
log from their own checkpoint and also poll, so a lost wake-up costs latency, not events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

import asyncpg

from support.background import BackgroundLoop, Backoff, reconnecting

CHANNEL: Final = "eventgraph_log"
LISTENER_APPLICATION_NAME: Final = "eventgraph-listener"

log = logging.getLogger(__name__)


class Signal:
    """An in-process wake-up that many tasks can wait on. Take `armed()` *before* reading, then
    wait on it, so that a wake-up fired in between is not missed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def armed(self) -> asyncio.Event:
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        return False


class CoalescingNotifier:
    """Sends `NOTIFY` after appends have committed, at most once per `interval` per process.

    A NOTIFY inside each append transaction serialises commits on the notification queue and
    roughly halves concurrent append throughput; one small notification per few milliseconds,
    outside any append transaction, costs nothing measurable."""

    def __init__(self, pool: asyncpg.Pool, local: Signal, interval: float = 0.005) -> None:
        self._pool = pool
        self._local = local
        self._interval = interval
        self._pending = asyncio.Event()
        self._loop = BackgroundLoop("eventgraph-notifier", self._run)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def committed(self) -> None:
        """Called after an append commits: wakes local readers now, other processes soon."""
        self._local.fire()
        self._pending.set()

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            try:
                await self._pool.execute("SELECT pg_notify($1, '')", CHANNEL)
            except Exception as exc:  # a lost wake-up only costs latency
                log.warning("could not send the log wake-up (readers will poll): %s", exc)
            await asyncio.sleep(self._interval)


class Listener:
    """Holds one connection that LISTENs on some channels and calls each channel's handler
    with every notification's payload. Reconnects by itself, and calls every handler with
    None after each (re)connect, since anything may have been missed while it was away."""

    def __init__(
        self,
        dsn: str,
        handlers: dict[str, Callable[[str | None], None]],
        check_interval: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._handlers = handlers
        self._check_interval = check_interval
        self._loop = reconnecting(
            "eventgraph-listener",
            self._session,
            expected=(asyncpg.PostgresError, OSError, asyncpg.InterfaceError),
            first=0.05,
        )
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        self._handlers[channel](str(payload))

    async def _session(self, backoff: Backoff) -> None:
        conn = await asyncpg.connect(
            self._dsn, server_settings={"application_name": LISTENER_APPLICATION_NAME}
        )
        try:
            for channel in self._handlers:
                await conn.add_listener(channel, self._dispatch)
            self.connected.set()
            for handler in self._handlers.values():
                handler(None)
            backoff.reset()
            while not conn.is_closed():
                await asyncio.sleep(self._check_interval)
                await conn.execute("SELECT 1")
        finally:
            self.connected.clear()
            if not conn.is_closed():
                conn.terminate()


def log_listener(dsn: str, signal: Signal, check_interval: float = 1.0) -> Listener:
    """A listener that fires `signal` on every wake-up of the log."""
    return Listener(dsn, {CHANNEL: lambda _: signal.fire()}, check_interval)
