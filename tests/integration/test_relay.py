"""The relay against the real RabbitMQ of this machine (127.0.0.1:5672, guest/guest;
EVENTGRAPH_TEST_AMQP_URL to use another): every event arrives, each stream's in order,
with its headers; a broker that drops the relay's connection, and a relay process killed
mid-stream, cost duplicates (same message id) and never a missing event; a consumer that
stalls does not hold commands back; the consumer helper applies each event once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import orjson
import pytest

from eventstore.events import NO_STREAM, NewEvent
from eventstore.notify import Signal
from eventstore.store import EventStore
from transport.consumer import Consumer
from transport.relay import EXCHANGE, Relay

AMQP_URL = os.environ.get("EVENTGRAPH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def broker_available() -> bool:
    parts = urlsplit(AMQP_URL)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def amqp_url() -> str:
    if not broker_available():
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ is not reachable at {AMQP_URL}")
        pytest.skip("RabbitMQ is not running here")
    return AMQP_URL


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[str]:
    """A durable queue of every event, deleted afterwards: it keeps what arrives while the
    test breaks connections."""
    name = f"test-relay-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    declared = await channel.declare_queue(name, durable=True)
    await declared.bind(exchange, "#")
    await connection.close()
    try:
        yield name
    finally:
        connection = await aio_pika.connect(amqp_url)  # the test may have closed the first
        channel = await connection.channel()
        await channel.queue_delete(name)
        await connection.close()


async def drain(url: str, name: str, wanted: set[str], seconds: float = 30) -> list[Any]:
    """Messages of queue `name` until every event id in `wanted` has arrived."""
    got: list[Any] = []
    seen: set[str] = set()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(name, durable=True, passive=True)
        deadline = time.monotonic() + seconds
        while not wanted <= seen:
            assert time.monotonic() < deadline, f"missing {len(wanted - seen)} events"
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            got.append(message)
            seen.add(str(message.message_id))
    finally:
        await connection.close()
    return got


def event(n: int) -> NewEvent:
    return NewEvent("ThingHappened", {"n": n}, metadata={"correlationId": f"req-{n}"})


async def append_across_streams(
    store: EventStore, streams: int, each: int, pause: float = 0.0
) -> dict[str, int]:
    """`each` events on each of `streams` streams, appended concurrently, each stream pausing
    `pause` seconds between its appends; event id -> position."""
    ids: dict[str, int] = {}

    async def one(s: int) -> None:
        for v in range(each):
            e = event(s * 1000 + v)
            result = await store.append({f"thing-{s}": (v if v else NO_STREAM, [e])})
            ids[str(e.event_id)] = result.last_position
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(one(s) for s in range(streams)))
    return ids


def assert_in_stream_order(messages: list[Any]) -> None:
    """Without duplicates (first arrivals), every stream's versions come in order."""
    first: dict[str, Any] = {}
    for m in messages:
        first.setdefault(str(m.message_id), m)
    versions: dict[str, list[int]] = defaultdict(list)
    for m in first.values():
        versions[m.headers["stream_id"]].append(m.headers["stream_version"])
    for stream, seen in versions.items():
        assert seen == sorted(seen), stream


async def reached(pool: asyncpg.Pool, position: int, seconds: float = 30) -> None:
    """Wait until the relay's checkpoint (confirmed by the broker) is at `position`."""
    deadline = time.monotonic() + seconds
    while await checkpoint(pool) < position:
        assert time.monotonic() < deadline, f"the relay did not reach {position}"
        await asyncio.sleep(0.02)


async def checkpoint(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.relay_checkpoints")
    )


async def test_every_event_arrives_in_stream_order_with_its_headers(
    store: EventStore, clean_db: str, amqp_url: str, queue: str
) -> None:
    relay = Relay(clean_db, store, amqp_url, Signal(), poll_interval=0.05)
    relay.start()
    try:
        ids = await append_across_streams(store, streams=8, each=25)
        got = await drain(amqp_url, queue, set(ids))
        await reached(store.pool, max(ids.values()))  # moved once the broker confirmed
    finally:
        await relay.stop()
    assert len(got) == len(ids)  # no fault, no duplicate
    assert_in_stream_order(got)
    for m in got:
        body = orjson.loads(m.body)
        assert m.routing_key == "thing.ThingHappened"
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert m.content_type == "application/json"
        assert m.headers["position"] == body["position"] == ids[str(m.message_id)]
        assert m.headers["stream_id"] == body["streamId"]
        assert m.headers["stream_version"] == body["streamVersion"]
        assert m.headers["schema_version"] == body["schemaVersion"] == 1
        assert (
            m.headers["correlation_id"]
            == body["metadata"]["correlationId"]
            == f"req-{body['data']['n']}"
        )
        assert body["eventId"] == body["id"] == str(m.message_id)


async def test_a_connection_closed_by_the_broker_costs_duplicates_never_a_gap(
    store: EventStore, clean_db: str, amqp_url: str, queue: str
) -> None:
    relay = Relay(clean_db, store, amqp_url, Signal(), poll_interval=0.05)
    relay.start()
    try:
        appending = asyncio.create_task(
            append_across_streams(store, streams=6, each=60, pause=0.01)
        )
        await reached(store.pool, 50)
        closed = await asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "close_all_connections", "closed by test_relay"],
            capture_output=True,
            text=True,
        )
        assert closed.returncode == 0, closed.stderr
        ids = await appending
        await reached(store.pool, max(ids.values()), 30)
    finally:
        await relay.stop()
    got = await drain(amqp_url, queue, set(ids))
    assert {str(m.message_id) for m in got} == set(ids)
    assert_in_stream_order(got)


async def test_a_relay_process_killed_mid_stream_is_followed_without_a_gap(
    store: EventStore, clean_db: str, amqp_url: str, queue: str, tmp_path: Any
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": clean_db,
        "EVENTGRAPH_PUBLISH_URL": amqp_url,
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
        "EVENTGRAPH_JWT_SECRET": "relay-test-" + "x" * 32,
    }

    def publish() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "eventgraph.cli", "publish"]
        return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)

    first = publish()
    try:
        deadline = time.monotonic() + 30
        while not await store.pool.fetchval("SELECT count(*) FROM eventgraph.relay_checkpoints"):
            assert time.monotonic() < deadline, "the relay process did not start leading"
            await asyncio.sleep(0.05)
        appending = asyncio.create_task(
            append_across_streams(store, streams=6, each=100, pause=0.01)
        )
        await reached(store.pool, 50)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = await checkpoint(store.pool)
        ids = await appending
        assert killed_at < max(ids.values())
        second = publish()
        try:
            await reached(store.pool, max(ids.values()), 30)
        finally:
            second.terminate()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    got = await drain(amqp_url, queue, set(ids))
    assert {str(m.message_id) for m in got} == set(ids)
    assert_in_stream_order(got)


async def test_a_stalled_consumer_does_not_hold_commands_back(
    store: EventStore, clean_db: str, amqp_url: str, queue: str
) -> None:
    async def timed_appends(n: int) -> float:
        started = time.perf_counter()
        for i in range(n):
            await store.append({f"slow-{uuid.uuid4().hex[:8]}": (NO_STREAM, [event(i)])})
        return time.perf_counter() - started

    alone = await timed_appends(100)
    # A consumer that takes one message and never acknowledges it.
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    stalled = await channel.declare_queue(queue, durable=True, passive=True)

    async def never_acknowledge(_message: Any) -> None:
        await asyncio.sleep(3600)

    await stalled.consume(never_acknowledge)
    relay = Relay(clean_db, store, amqp_url, Signal(), poll_interval=0.05)
    relay.start()
    try:
        beside = await timed_appends(100)
        head = await store.head()
        await reached(store.pool, head, 20)
    finally:
        await relay.stop()
        await connection.close()
    assert beside < 3 * alone + 0.5, (alone, beside)


async def test_the_consumer_helper_applies_each_event_once(
    store: EventStore, pool: asyncpg.Pool, clean_db: str, amqp_url: str
) -> None:
    name = f"test-consumer-{uuid.uuid4().hex[:8]}"
    await pool.execute("CREATE TABLE IF NOT EXISTS consumed (n integer NOT NULL)")
    await pool.execute("TRUNCATE consumed")

    async def handle(body: dict[str, Any], conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO consumed (n) VALUES ($1)", body["data"]["n"])

    consumer = Consumer(amqp_url, pool, name, ["thing.*"], handle)
    running = asyncio.create_task(consumer.run())
    try:
        for _ in range(50):  # the queue is declared and bound
            await asyncio.sleep(0.05)
        ids = await append_across_streams(store, streams=3, each=10)
        for _ in range(2):  # a relay that starts again from 0: every event twice
            await pool.execute("TRUNCATE eventgraph.relay_checkpoints")
            relay = Relay(clean_db, store, amqp_url, Signal(), poll_interval=0.05)
            relay.start()
            await reached(pool, max(ids.values()), 20)
            await relay.stop()
        deadline = time.monotonic() + 20
        while consumer.applied + consumer.duplicates < 2 * len(ids):
            assert time.monotonic() < deadline, (consumer.applied, consumer.duplicates)
            await asyncio.sleep(0.05)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        await channel.queue_delete(name)
        await connection.close()
    assert consumer.applied == len(ids) and consumer.duplicates == len(ids)
    assert await pool.fetchval("SELECT count(*) FROM consumed") == len(ids)
    assert await pool.fetchval("SELECT count(DISTINCT n) FROM consumed") == len(ids)


async def test_the_consumer_rejects_a_message_that_is_not_an_event_and_goes_on(
    store: EventStore, pool: asyncpg.Pool, clean_db: str, amqp_url: str
) -> None:
    name = f"test-foreign-{uuid.uuid4().hex[:8]}"
    seen: list[int] = []

    async def handle(body: dict[str, Any], _conn: asyncpg.Connection) -> None:
        seen.append(body["data"]["n"])

    consumer = Consumer(amqp_url, pool, name, ["#"], handle)
    running = asyncio.create_task(consumer.run())
    connection = await aio_pika.connect(amqp_url)
    try:
        await asyncio.sleep(0.5)  # the queue is declared and bound
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        forged = orjson.dumps({"eventId": str(uuid.uuid4()), "data": {"n": 99}})
        for message_id, body in [
            (None, b"{not json"),
            ("not-a-uuid", b"{}"),
            ("'; DROP TABLE x; --", b"[]"),
            (str(uuid.uuid4()), forged),  # an event id that is not the message's
        ]:
            await exchange.publish(
                aio_pika.Message(body, message_id=message_id), "thing.ThingHappened"
            )
        ids = await append_across_streams(store, streams=1, each=3)
        relay = Relay(clean_db, store, amqp_url, Signal(), poll_interval=0.05)
        relay.start()
        try:
            await reached(store.pool, max(ids.values()))
            deadline = time.monotonic() + 20
            while consumer.applied < len(ids):
                assert time.monotonic() < deadline, (consumer.applied, seen)
                assert not running.done(), running
                await asyncio.sleep(0.05)
        finally:
            await relay.stop()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        channel = await connection.channel()
        await channel.queue_delete(name)
        await connection.close()
    assert sorted(seen) == [0, 1, 2]
    processed = await pool.fetchval(
        "SELECT count(*) FROM eventgraph_processed_events WHERE consumer = $1", name
    )
    assert processed == len(ids)
