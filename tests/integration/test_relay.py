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
from transport.consumer import DEAD_LETTER_EXCHANGE, REASON_HEADER, Consumer
from transport.relay import EXCHANGE, Relay, signature

AMQP_URL = os.environ.get("EVENTGRAPH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
KEY = b"relay-test-publish-key-" + b"k" * 32


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
    relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
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
        assert m.headers["signature"] == signature(
            KEY, m.message_id, m.routing_key, m.type, m.headers, m.body
        )


async def test_a_connection_closed_by_the_broker_costs_duplicates_never_a_gap(
    store: EventStore, clean_db: str, amqp_url: str, queue: str
) -> None:
    relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
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
        "EVENTGRAPH_PUBLISH_KEY": KEY.decode(),
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
    relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
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

    consumer = Consumer(amqp_url, pool, name, ["thing.*"], handle, key=KEY)
    running = asyncio.create_task(consumer.run())
    try:
        for _ in range(50):  # the queue is declared and bound
            await asyncio.sleep(0.05)
        ids = await append_across_streams(store, streams=3, each=10)
        for _ in range(2):  # a relay that starts again from 0: every event twice
            await pool.execute("TRUNCATE eventgraph.relay_checkpoints")
            relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
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
        await channel.queue_delete(consumer.dead_letter_queue)
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

    consumer = Consumer(amqp_url, pool, name, ["#"], handle, key=KEY)
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
        relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
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
        dead = await dead_letters(channel, consumer)
        await channel.queue_delete(name)
        await channel.queue_delete(consumer.dead_letter_queue)
        await connection.close()
    assert sorted(seen) == [0, 1, 2]
    assert len(dead) == 4 and consumer.dead_lettered == 4  # unsigned: kept, not applied
    processed = await pool.fetchval(
        "SELECT count(*) FROM eventgraph_processed_events WHERE consumer = $1", name
    )
    assert processed == len(ids)


async def dead_letters(channel: Any, consumer: Consumer) -> list[Any]:
    """What the consumer dead-lettered, taken off its dead-letter queue."""
    got = []
    declared = await channel.declare_queue(consumer.dead_letter_queue, durable=True, passive=True)
    while (message := await declared.get(no_ack=True, fail=False)) is not None:
        got.append(message)
    return got


def order_placed(total: str, data: dict[str, Any] | None = None) -> tuple[str, bytes]:
    """An OrderPlaced as the relay would publish it: (message id, body)."""
    event_id = str(uuid.uuid4())
    order = str(uuid.uuid4())
    body = orjson.dumps(
        {
            "id": event_id,
            "position": 10**9,
            "eventId": event_id,
            "streamId": f"order-{order}",
            "streamVersion": 1,
            "type": "OrderPlaced",
            "schemaVersion": 2,
            "data": {"orderId": order, "customerId": "mallory", "total": total}
            if data is None
            else data,
            "metadata": {},
            "occurredAt": "2026-01-01T00:00:00+00:00",
        }
    )
    return event_id, body


def signed_message(key: bytes, event_id: str, body: bytes, *, sign: bool = True) -> Any:
    headers: dict[str, Any] = {
        "position": 10**9,
        "stream_id": orjson.loads(body)["streamId"],
        "stream_version": 1,
        "schema_version": 2,
        "correlation_id": None,
    }
    if sign:
        headers["signature"] = signature(
            key, event_id, "order.OrderPlaced", "OrderPlaced", headers, body
        )
    return aio_pika.Message(
        body,
        message_id=event_id,
        type="OrderPlaced",
        headers=headers,
        content_type="application/json",
    )


async def run_consumer(
    amqp_url: str, pool: asyncpg.Pool, handle: Any, **options: Any
) -> tuple[Consumer, asyncio.Task[None]]:
    consumer = Consumer(
        amqp_url, pool, f"test-signed-{uuid.uuid4().hex[:8]}", ["#"], handle, key=KEY, **options
    )
    running = asyncio.create_task(consumer.run())
    await asyncio.sleep(0.5)  # the queues are declared and bound
    return consumer, running


async def stop_consumer(
    amqp_url: str, consumer: Consumer, running: asyncio.Task[None]
) -> list[Any]:
    """Stop it, delete its queues; what it dead-lettered."""
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        dead = await dead_letters(channel, consumer)
        await channel.queue_delete(consumer.name)
        await channel.queue_delete(consumer.dead_letter_queue)
    finally:
        await connection.close()
    return dead


async def until(predicate: Any, running: asyncio.Task[None], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        assert not running.done(), running
        await asyncio.sleep(0.05)


async def test_forged_and_unsigned_events_are_not_applied(
    store: EventStore, pool: asyncpg.Pool, clean_db: str, amqp_url: str
) -> None:
    """Anyone who can publish to the exchange could send a well-formed OrderPlaced with a
    negative total: unsigned, signed with another key, or a real signature on another body,
    none reaches the handler; each is dead-lettered saying why; the relay's events apply."""
    seen: list[dict[str, Any]] = []

    async def handle(body: dict[str, Any], _conn: asyncpg.Connection) -> None:
        seen.append(body)

    consumer, running = await run_consumer(amqp_url, pool, handle)
    connection = await aio_pika.connect(amqp_url)
    try:
        exchange = await (await connection.channel()).get_exchange(EXCHANGE)
        unsigned_id, unsigned = order_placed("-1000.00")
        forged_id, forged = order_placed("-1000.00")
        honest_id, honest = order_placed("10.00")
        tampered = signed_message(KEY, honest_id, honest)
        tampered.body = honest.replace(b'"10.00"', b'"-10.00"')
        for message in [
            signed_message(KEY, unsigned_id, unsigned, sign=False),
            signed_message(b"not-the-publish-key-" + b"x" * 32, forged_id, forged),
            tampered,
        ]:
            await exchange.publish(message, "order.OrderPlaced")
        ids = await append_across_streams(store, streams=1, each=2)
        relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
        relay.start()
        try:
            await until(lambda: consumer.applied == len(ids), running)
        finally:
            await relay.stop()
    finally:
        await connection.close()
        dead = await stop_consumer(amqp_url, consumer, running)
    assert [body["type"] for body in seen] == ["ThingHappened", "ThingHappened"]
    assert consumer.dead_lettered == 3
    assert sorted(str(m.message_id) for m in dead) == sorted([unsigned_id, forged_id, honest_id])
    for m in dead:
        assert "signature" in m.headers[REASON_HEADER]
    assert not await pool.fetchval(
        "SELECT count(*) FROM eventgraph_processed_events WHERE event_id = ANY($1::uuid[])",
        [unsigned_id, forged_id, honest_id],
    )


async def test_an_event_the_handler_cannot_apply_is_dead_lettered_after_n_tries_and_the_next_applies(
    store: EventStore, pool: asyncpg.Pool, amqp_url: str
) -> None:
    """A signed event with `data: {}` (the handler raises KeyError) used to stop the consumer
    for good, across restarts: now it is tried 3 times, dead-lettered with the error, and the
    next event is applied."""
    tries: dict[str, int] = defaultdict(int)
    applied: list[str] = []

    async def handle(body: dict[str, Any], conn: asyncpg.Connection) -> None:
        tries[body["eventId"]] += 1
        await conn.execute("SELECT 1")
        applied.append(body["data"]["total"])

    consumer, running = await run_consumer(amqp_url, pool, handle, max_attempts=3, retry_pause=0.01)
    connection = await aio_pika.connect(amqp_url)
    try:
        exchange = await (await connection.channel()).get_exchange(EXCHANGE)
        bad_id, bad = order_placed("0", data={})
        good_id, good = order_placed("12.50")
        await exchange.publish(signed_message(KEY, bad_id, bad), "order.OrderPlaced")
        await exchange.publish(signed_message(KEY, good_id, good), "order.OrderPlaced")
        await until(lambda: consumer.applied == 1, running)
    finally:
        await connection.close()
        dead = await stop_consumer(amqp_url, consumer, running)
    assert tries[bad_id] == 3 and applied == ["12.50"]
    assert consumer.dead_lettered == 1
    [message] = dead
    assert str(message.message_id) == bad_id and message.body == bad
    assert "failed 3 times" in message.headers[REASON_HEADER]
    assert "KeyError" in message.headers[REASON_HEADER]
    assert message.headers["x-eventgraph-routing-key"] == "order.OrderPlaced"
    # Nothing of the failed tries was kept: it can be published again once fixed.
    recorded = await pool.fetch(
        "SELECT event_id::text FROM eventgraph_processed_events WHERE consumer = $1",
        consumer.name,
    )
    assert [r["event_id"] for r in recorded] == [good_id]
    assert DEAD_LETTER_EXCHANGE == "eventgraph.dead-letter"


@pytest.mark.parametrize(
    "transient",
    [
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction (failover)"),
        asyncpg.TooManyConnectionsError("too many clients already"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_transient_database_error_is_waited_out_not_dead_lettered(
    pool: asyncpg.Pool, amqp_url: str, transient: Exception
) -> None:
    """A few seconds of failover (serialization failures, deadlocks, a read-only primary, no
    free connection) used to cost the message: 5 tries over ~1.5 s, then the dead-letter
    queue. Such an error is the database's, not the event's: the consumer keeps trying, with
    no limit on tries, and applies the event once the database answers again."""
    tries: dict[str, int] = defaultdict(int)
    applied: list[str] = []

    async def handle(body: dict[str, Any], conn: asyncpg.Connection) -> None:
        tries[body["eventId"]] += 1
        await conn.execute("SELECT 1")
        if tries[body["eventId"]] <= 8:  # well past max_attempts
            raise transient
        applied.append(body["data"]["total"])

    consumer, running = await run_consumer(amqp_url, pool, handle, max_attempts=3, retry_pause=0.01)
    connection = await aio_pika.connect(amqp_url)
    try:
        exchange = await (await connection.channel()).get_exchange(EXCHANGE)
        first_id, first = order_placed("1.00")
        second_id, second = order_placed("2.00")
        await exchange.publish(signed_message(KEY, first_id, first), "order.OrderPlaced")
        await exchange.publish(signed_message(KEY, second_id, second), "order.OrderPlaced")
        await until(lambda: consumer.applied == 2, running)
    finally:
        await connection.close()
        dead = await stop_consumer(amqp_url, consumer, running)
    assert dead == [] and consumer.dead_lettered == 0
    assert applied == ["1.00", "2.00"]  # each once, in the queue's order
    assert tries[first_id] == tries[second_id] == 9


async def test_a_handler_error_caused_by_a_transient_one_is_waited_out_too(
    pool: asyncpg.Pool, amqp_url: str
) -> None:
    """A handler that wraps the database's error (`raise ... from exc`) is waited out too;
    its own failures still count towards `max_attempts`."""
    tries = 0

    async def handle(_body: dict[str, Any], _conn: asyncpg.Connection) -> None:
        nonlocal tries
        tries += 1
        if tries <= 5:
            try:
                raise asyncpg.DeadlockDetectedError("deadlock detected")
            except asyncpg.DeadlockDetectedError as exc:
                raise RuntimeError("could not book the invoice") from exc

    consumer, running = await run_consumer(amqp_url, pool, handle, max_attempts=2, retry_pause=0.01)
    connection = await aio_pika.connect(amqp_url)
    try:
        exchange = await (await connection.channel()).get_exchange(EXCHANGE)
        event_id, body = order_placed("3.00")
        await exchange.publish(signed_message(KEY, event_id, body), "order.OrderPlaced")
        await until(lambda: consumer.applied == 1, running)
    finally:
        await connection.close()
        dead = await stop_consumer(amqp_url, consumer, running)
    assert dead == [] and tries == 6


async def test_the_consumer_accepts_any_of_several_keys(pool: asyncpg.Pool, amqp_url: str) -> None:
    """Rotating the publish key: the consumer is given the new key and the old one, and
    applies messages signed with either while relays change over; others are refused."""
    old = b"the-previous-publish-key-" + b"o" * 32
    seen: list[str] = []

    async def handle(body: dict[str, Any], _conn: asyncpg.Connection) -> None:
        seen.append(body["eventId"])

    consumer = Consumer(
        amqp_url, pool, f"test-keys-{uuid.uuid4().hex[:8]}", ["#"], handle, key=[KEY, old.decode()]
    )
    running = asyncio.create_task(consumer.run())
    await asyncio.sleep(0.5)  # the queues are declared and bound
    connection = await aio_pika.connect(amqp_url)
    try:
        exchange = await (await connection.channel()).get_exchange(EXCHANGE)
        new_id, new_body = order_placed("1.00")
        old_id, old_body = order_placed("2.00")
        other_id, other_body = order_placed("3.00")
        await exchange.publish(signed_message(KEY, new_id, new_body), "order.OrderPlaced")
        await exchange.publish(signed_message(old, old_id, old_body), "order.OrderPlaced")
        other = signed_message(b"never-a-publish-key-" + b"x" * 32, other_id, other_body)
        await exchange.publish(other, "order.OrderPlaced")
        await until(lambda: consumer.applied + consumer.dead_lettered == 3, running)
    finally:
        await connection.close()
        dead = await stop_consumer(amqp_url, consumer, running)
    assert seen == [new_id, old_id]
    assert [str(m.message_id) for m in dead] == [other_id]
    with pytest.raises(ValueError):
        Consumer(amqp_url, pool, "no-keys", ["#"], handle, key=[])
    with pytest.raises(ValueError):
        Consumer(amqp_url, pool, "an-empty-key", ["#"], handle, key=[KEY, b""])


async def test_the_reactions_events_are_published_like_any_other(
    clean_db: str, amqp_url: str, queue: str
) -> None:
    """LowStockReached and OrderExpired, appended by the server's own reactions, reach the
    broker: other services learn of low stock and of expired orders without polling."""
    from datetime import timedelta

    from application.commands import Policy
    from application.orders import PlaceOrder
    from application.products import RegisterProduct
    from domain.values import Actor
    from eventgraph.runtime import open_runtime
    from tests.integration.test_reactions import Clock, events_of, pending, until

    clock = Clock()
    policy = Policy(payment_window=timedelta(seconds=60), low_stock_threshold=5)
    staff, alice = Actor("sam", "staff"), Actor("alice", "customer")
    async with open_runtime(
        clean_db, publish_url=amqp_url, publish_key=KEY, policy=policy, clock=clock
    ) as runtime:
        assert runtime.shop is not None
        await runtime.shop.handle(RegisterProduct(staff, "A", "A", "1.00", 6))
        await runtime.shop.handle(PlaceOrder(alice, [("A", 2)]))  # 4 < 5: low

        async def flagged() -> bool:  # before the order expires and its stock comes back
            return bool(await events_of(runtime.pool, "LowStockReached"))

        await until(flagged)
        clock.advance(timedelta(seconds=60))

        async def expired() -> bool:
            return await pending(runtime.pool) == 0 and bool(
                await events_of(runtime.pool, "OrderExpired")
            )

        await until(expired)
        ids = {
            str(r["event_id"]): r["type"]
            for r in await runtime.pool.fetch(
                "SELECT event_id, type FROM eventgraph.events"
                " WHERE type IN ('LowStockReached', 'OrderExpired')"
            )
        }
        assert sorted(ids.values()) == ["LowStockReached", "OrderExpired"]
        messages = await drain(amqp_url, queue, set(ids))
    keys = {m.routing_key for m in messages if str(m.message_id) in ids}
    assert keys == {"product.LowStockReached", "order.OrderExpired"}


async def test_personal_data_is_published_while_its_key_exists_and_consumers_erase_copies(
    pool: asyncpg.Pool, clean_db: str, amqp_url: str, queue: str
) -> None:
    from eventstore.personal import (
        MasterKey,
        PersonalData,
        PersonalFields,
        PersonalKeys,
        new_master_key_text,
    )

    personal = PersonalData(
        PersonalKeys([MasterKey.from_text(new_master_key_text())]),
        {"OrderPlaced": PersonalFields("customerId", ("email",))},
        {"CustomerForgotten": "customerId"},
    )
    store = EventStore(pool, personal=personal)
    name = f"test-erasing-{uuid.uuid4().hex[:8]}"
    await pool.execute("CREATE TABLE IF NOT EXISTS copies (customer text, email text)")
    await pool.execute("TRUNCATE copies")

    async def keep(body: dict[str, Any], conn: asyncpg.Connection) -> None:
        data = body["data"]
        await conn.execute("INSERT INTO copies VALUES ($1, $2)", data["customerId"], data["email"])

    async def erase(body: dict[str, Any], conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM copies WHERE customer = $1", body["data"]["customerId"])

    consumer = Consumer(amqp_url, pool, name, ["order.*"], keep, key=KEY, on_forgotten=erase)
    running = asyncio.create_task(consumer.run())
    relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
    try:
        await asyncio.sleep(0.5)  # the queue is declared and bound
        placed = {}
        for who in ("ada", "bob"):
            e = NewEvent("OrderPlaced", {"customerId": who, "email": f"{who}@example.org"})
            placed[who] = str(e.event_id)
            await store.append({f"order-{who}": (NO_STREAM, [e])})
        relay.start()
        first = await drain(amqp_url, queue, set(placed.values()))
        emails = {orjson.loads(m.body)["data"]["email"] for m in first}
        assert emails == {"ada@example.org", "bob@example.org"}, "in clear while the key exists"
        forget = NewEvent("CustomerForgotten", {"customerId": "ada", "forgottenBy": "ada"})
        await store.append({"customer-ada": (NO_STREAM, [forget])})
        await drain(amqp_url, queue, {str(forget.event_id)})
        deadline = time.monotonic() + 20
        while consumer.applied < 3:
            assert time.monotonic() < deadline, consumer.applied
            await asyncio.sleep(0.05)
        copies = await pool.fetch("SELECT customer, email FROM copies")
        assert [(r["customer"], r["email"]) for r in copies] == [("bob", "bob@example.org")]

        await relay.stop()  # published again from 0: ada's order now without her email
        await pool.execute("TRUNCATE eventgraph.relay_checkpoints")
        relay = Relay(clean_db, store, amqp_url, Signal(), key=KEY, poll_interval=0.05)
        relay.start()
        again = await drain(amqp_url, queue, {placed["ada"]})
        bodies = [orjson.loads(m.body) for m in again if str(m.message_id) == placed["ada"]]
        assert bodies and all(b["data"]["email"] is None for b in bodies)
    finally:
        await relay.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.queue_delete(consumer.dead_letter_queue)
        await connection.close()
