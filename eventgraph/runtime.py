"""The composition root: opens the pool, migrates, wires the event log, its wake-ups, the
projectors and their watch, and closes them in reverse."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from application.commands import Policy
from application.reactions import ReactionRunner
from application.shop import Shop, reactions
from domain.codec import forgetting_events, personal_fields
from domain.upcasters import UPCASTERS
from eventgraph.config import Settings
from eventstore.migrate import migrate
from eventstore.notify import CHANNEL as LOG_CHANNEL
from eventstore.notify import CoalescingNotifier, Listener, Signal
from eventstore.personal import (
    MasterKey,
    PersonalData,
    PersonalFields,
    PersonalKeys,
    new_master_key_text,
)
from eventstore.store import EventStore, init_connection
from eventstore.upcasting import UpcasterRegistry
from projections import all_projections
from projections.generations import ensure_projection
from projections.runner import ProjectionRunner
from projections.watch import ProjectionWatch
from transport.fanout import Fanout
from transport.relay import Relay


@dataclass
class Runtime:
    """What a process runs on. `pool` and `store` are the event log's database (the command
    side); `read_pool` and `read_dsn` the read side's (read models, checkpoints, rebuilds,
    parked events): the same database unless EVENTGRAPH_READ_DATABASE_URL names another."""

    dsn: str
    pool: asyncpg.Pool
    store: EventStore
    log_signal: Signal
    listener: Listener
    watch: ProjectionWatch
    runners: list[ProjectionRunner]
    fanout: Fanout
    relay: Relay | None = None
    read_dsn: str = ""
    read_pool: asyncpg.Pool | None = None
    shop: Shop | None = None
    """Where this process's commands go: the API's and its reactions' alike."""
    reactors: list[ReactionRunner] = field(default_factory=list)

    @property
    def reads(self) -> asyncpg.Pool:
        """The read side's pool."""
        return self.read_pool or self.pool


def shop_upcasters() -> UpcasterRegistry:
    registry = UpcasterRegistry()
    for event_type, from_version, upcaster in UPCASTERS:
        registry.register(event_type, from_version, upcaster)
    return registry


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


def personal_data(master_keys: Sequence[MasterKey] = ()) -> PersonalData:
    """The shop's personal fields and the keys that seal them, under `master_keys`. Without
    any (tests, benchmarks): a master key of this process only, so that what it seals cannot
    be read once it ends; `runtime_for` passes the configured ones."""
    masters = tuple(master_keys) or (MasterKey.from_text(new_master_key_text()),)
    return PersonalData(
        PersonalKeys(masters),
        {t: PersonalFields(subject, fields) for t, (subject, fields) in personal_fields().items()},
        forgetting_events(),
    )


@contextlib.asynccontextmanager
async def open_runtime(
    dsn: str,
    *,
    run_projectors: bool = True,
    max_pool: int = 20,
    broadcast_url: str = "memory://",
    position_poll_seconds: float = 0.5,
    publish_url: str | None = None,
    read_dsn: str | None = None,
    publish_key: bytes = b"",
    policy: Policy | None = None,
    clock: Callable[[], datetime] | None = None,
    master_keys: Sequence[MasterKey] = (),
) -> AsyncIterator[Runtime]:
    """Everything a process runs on. With `run_projectors`, it also runs the projectors and
    the reactions (each led by one process at a time, whichever runs them). `clock` is the
    time commands and reactions decide by (tests move it; by default, the system's)."""
    separate = read_dsn is not None and read_dsn != dsn
    read_dsn = read_dsn or dsn
    # The read database gets the same migrations (its log tables stay empty): one schema
    # history, and either database can be the other's in a test or a move.
    for target in [dsn, read_dsn] if separate else [dsn]:
        conn = await asyncpg.connect(target)
        try:
            await migrate(conn)
            if target == read_dsn:
                for projection in all_projections():
                    await ensure_projection(conn, projection)
        finally:
            await conn.close()
    pool = await create_pool(dsn, max_size=max_pool)
    read_pool = await create_pool(read_dsn, max_size=max_pool) if separate else None
    reads = read_pool or pool
    signal = Signal()
    notifier = CoalescingNotifier(pool, signal)
    store = EventStore(pool, shop_upcasters(), notifier, personal_data(master_keys))
    policy = policy or Policy()
    shop = Shop(store, clock, policy)
    watch = ProjectionWatch(reads, position_poll_seconds)
    fanout = Fanout(broadcast_url, watch)

    def applied(name: str, position: int) -> None:
        watch.advance(name, position)
        fanout.offer(name, position)

    listener = Listener(dsn, {LOG_CHANNEL: lambda _: signal.fire()})
    runners = (
        [ProjectionRunner(p, read_dsn, store, signal, applied) for p in all_projections()]
        if run_projectors
        else []
    )
    reactors = (
        [ReactionRunner(r, dsn, store, shop, signal, clock=clock) for r in reactions(policy)]
        if run_projectors
        else []
    )
    notifier.start()
    listener.start()
    await watch.refresh()
    watch.start()
    fanout.start()
    for runner in runners:
        runner.start()
    for reactor in reactors:
        reactor.start()
    relay = Relay(dsn, store, publish_url, signal, key=publish_key) if publish_url else None
    if relay is not None:
        relay.start()
    try:
        yield Runtime(
            dsn,
            pool,
            store,
            signal,
            listener,
            watch,
            runners,
            fanout,
            relay,
            read_dsn,
            read_pool,
            shop,
            reactors,
        )
    finally:
        if relay is not None:
            await relay.stop()
        for reactor in reversed(reactors):
            await reactor.stop()
        for runner in reversed(runners):
            await runner.stop()
        await fanout.stop()
        await watch.stop()
        await listener.stop()
        await notifier.stop()
        if read_pool is not None:
            await read_pool.close()
        await pool.close()


def runtime_for(
    settings: Settings,
    dsn: str,
    *,
    run_projectors: bool,
    max_pool: int = 20,
    publish: bool = False,
) -> contextlib.AbstractAsyncContextManager[Runtime]:
    """`open_runtime` as the settings configure it (fan-out, read database, relay if
    `publish`): what `serve`, `project`, `publish` and `rebuild` each open."""
    return open_runtime(
        dsn,
        run_projectors=run_projectors,
        max_pool=max_pool,
        broadcast_url=settings.broadcast_url,
        position_poll_seconds=settings.position_poll_seconds,
        publish_url=settings.publish_url if publish else None,
        read_dsn=settings.read_database_url,
        publish_key=settings.resolve_publish_key() if publish and settings.publish_url else b"",
        policy=settings.policy(),
        master_keys=settings.resolve_master_keys(),
    )
