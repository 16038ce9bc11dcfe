"""Fan-out between processes through broadcaster (memory, Postgres, Redis), and its recovery
when the backend drops its connections."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import asyncpg
import pytest

from projections.watch import ProjectionWatch
from transport.fanout import Fanout

REDIS_URL = os.environ.get("EVENTGRAPH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["postgres", "redis"])
async def backend_url(request: pytest.FixtureRequest, clean_db: str) -> AsyncIterator[str]:
    if request.param == "redis":
        if not redis_available():
            pytest.skip("no Redis on 127.0.0.1:6379")
        yield REDIS_URL
    else:
        yield clean_db


async def until(predicate: object, seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def checkpoint(pool: asyncpg.Pool, name: str, position: int) -> None:
    """What a projector commits: the position a watch may confirm a hint against."""
    await pool.execute(
        "INSERT INTO eventgraph.projections (name, version, generation, position)"
        " VALUES ($1, 1, 1, $2) ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        name,
        position,
    )


async def test_progress_reaches_every_process_and_survives_a_dropped_backend(
    backend_url: str, pool: asyncpg.Pool
) -> None:
    # Two "processes": each its own watch and fan-out; positions polled only every minute, so
    # that only the fan-out's hints can make them read the checkpoints within the test.
    watches = [ProjectionWatch(pool, poll_interval=60), ProjectionWatch(pool, poll_interval=60)]
    fanouts = [Fanout(backend_url, w, heartbeat=0.2, dead_after=2.0) for w in watches]
    for w in watches:
        w.start()
    for f in fanouts:
        f.start()
    from prometheus_client import REGISTRY

    def reconnects_counted() -> float:
        return REGISTRY.get_sample_value("eventgraph_fanout_reconnects_total") or 0.0

    counted = reconnects_counted()
    try:
        await asyncio.wait_for(asyncio.gather(*(f.connected.wait() for f in fanouts)), 10)
        assert REGISTRY.get_sample_value("eventgraph_fanout_connected") == 1
        await checkpoint(pool, "products", 7)
        fanouts[0].offer("products", 7)
        await until(lambda: watches[1].position("products") == 7)

        # The backend drops every connection of ours.
        if backend_url.startswith("redis"):
            import redis.asyncio as redis

            client = redis.Redis.from_url(REDIS_URL)
            await client.client_kill_filter(_type="pubsub")
            await client.client_kill_filter(_type="normal", skipme=True)
            await client.aclose()
        else:
            killed = await pool.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert killed >= 2  # both fan-outs' connections (and the pool's others)
        await until(lambda: all(f.reconnects >= 1 for f in fanouts), 15)
        assert reconnects_counted() - counted >= 2
        await asyncio.wait_for(asyncio.gather(*(f.connected.wait() for f in fanouts)), 10)
        await checkpoint(pool, "orders", 11)
        await checkpoint(pool, "products", 8)
        fanouts[1].offer("orders", 11)
        fanouts[0].offer("products", 8)
        await until(
            lambda: watches[0].position("orders") == 11 and watches[1].position("products") == 8
        )
    finally:
        for f in fanouts:
            await f.stop()
        for w in watches:
            await w.stop()


async def test_a_forged_position_on_the_broker_is_only_a_hint(
    backend_url: str, pool: asyncpg.Pool
) -> None:
    """Whoever can publish on the broker cannot move a watch past what the database says:
    a forged `orders:10^15` makes it read the checkpoints back, nothing more."""
    watch = ProjectionWatch(pool, poll_interval=60)
    forger = ProjectionWatch(pool, poll_interval=60)
    fanouts = [Fanout(backend_url, watch, heartbeat=0.2), Fanout(backend_url, forger)]
    watch.start()
    for f in fanouts:
        f.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(f.connected.wait() for f in fanouts)), 10)
        await checkpoint(pool, "orders", 5)
        fanouts[1].offer("orders", 10**15)
        await until(lambda: watch.hints >= 1 and watch.position("orders") == 5)
        await asyncio.sleep(0.3)
        assert watch.position("orders") == 5
        with pytest.raises(TimeoutError):  # read-your-writes still waits for the real position
            await watch.wait("orders", 6, 0.3)
        await checkpoint(pool, "orders", 6)
        fanouts[1].offer("orders", 10**15 + 1)
        await watch.wait("orders", 6, 5)
    finally:
        for f in fanouts:
            await f.stop()
        await watch.stop()


async def test_memory_fanout_serves_one_process(pool: asyncpg.Pool) -> None:
    watch = ProjectionWatch(pool, poll_interval=60)
    fanout = Fanout("memory://", watch, heartbeat=0.2, dead_after=1.0)
    watch.start()
    fanout.start()
    try:
        await asyncio.wait_for(fanout.connected.wait(), 5)
        await checkpoint(pool, "sales", 3)
        fanout.offer("sales", 3)
        await until(lambda: watch.position("sales") == 3)
        await asyncio.sleep(1.5)  # heartbeats keep a quiet connection alive
        assert fanout.reconnects == 0
    finally:
        await fanout.stop()
        await watch.stop()
