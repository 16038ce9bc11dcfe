"""The composition root: opens the pool, migrates, wires the event log and its wake-ups, and
closes them in reverse."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from eventstore.migrate import migrate
from eventstore.notify import CoalescingNotifier, LogListener, Signal
from eventstore.store import EventStore, init_connection
from eventstore.upcasting import UpcasterRegistry


@dataclass
class Runtime:
    dsn: str
    pool: asyncpg.Pool
    store: EventStore
    log_signal: Signal
    listener: LogListener


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Pool connections carry no session state (no SET, LISTEN or session advisory lock:
    those live on dedicated connections), so releasing one needs no RESET round trip."""


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_no_session_state,
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def open_runtime(
    dsn: str, upcasters: UpcasterRegistry | None = None, max_pool: int = 20
) -> AsyncIterator[Runtime]:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await create_pool(dsn, max_size=max_pool)
    signal = Signal()
    notifier = CoalescingNotifier(pool, signal)
    listener = LogListener(dsn, signal)
    notifier.start()
    listener.start()
    try:
        yield Runtime(
            dsn=dsn,
            pool=pool,
            store=EventStore(pool, upcasters, notifier),
            log_signal=signal,
            listener=listener,
        )
    finally:
        await listener.stop()
        await notifier.stop()
        await pool.close()
