"""The RabbitMQ relay: its throughput beside a raw aio-pika publish-with-confirms loop in the
same run, and the latency from an append to a consumer holding the event.

    uv run python -m bench.relay [--events 20000] [--rounds 3] [--rate 200] [--seconds 10]

Throughput: `eventgraph publish` runs in its own process from checkpoint 0 over a log of
`--events` events (100-event appends on 100 streams, the shape of `bench.append`), timed
until its checkpoint reaches the head; the floor is this process publishing the same
bodies, 500 at a time, on a confirm channel to the same exchange and queue. Rounds
alternate. Latency: events appended at `--rate`/s (one per append, its send time in its
data), the relay in its own process, a consumer here; p50/p99 of consumer receipt minus
the append being sent. Needs RabbitMQ at EVENTGRAPH_BENCH_AMQP_URL (default the local one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import aio_pika
import asyncpg
import orjson

from bench.append import DATA, META
from bench.common import fresh_database, machine, server
from eventstore.events import NO_STREAM, NewEvent
from eventstore.notify import CoalescingNotifier, Signal
from eventstore.store import EventStore, init_connection
from transport.relay import EXCHANGE, body, routing_key

AMQP_URL = os.environ.get("EVENTGRAPH_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def relay_process(url: str, data_dir: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "EVENTGRAPH_PUBLISH_URL": AMQP_URL,
        "EVENTGRAPH_DATA_DIR": data_dir,
        "EVENTGRAPH_JWT_SECRET": "bench-relay-" + "x" * 32,
        "EVENTGRAPH_PUBLISH_KEY": "bench-relay-key-" + "k" * 32,  # the relay signs each message
    }
    command = [sys.executable, "-m", "eventgraph.cli", "publish"]
    return subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)


async def queue(channel: Any, name: str) -> Any:
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    declared = await channel.declare_queue(name, durable=True)
    await declared.bind(exchange, "#")
    return exchange, declared


async def relay_rate(url: str, pool: asyncpg.Pool, head: int, data_dir: str) -> float:
    await pool.execute("TRUNCATE eventgraph.relay_checkpoints")
    process = relay_process(url, data_dir)
    try:
        while not await pool.fetchval("SELECT count(*) FROM eventgraph.relay_checkpoints"):  # noqa: ASYNC110 - polling Postgres
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        while await pool.fetchval("SELECT position FROM eventgraph.relay_checkpoints") < head:  # noqa: ASYNC110 - polling Postgres
            await asyncio.sleep(0.005)
        return head / (time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(10)


async def raw_rate(store: EventStore, head: int, exchange: Any) -> float:
    events = await store.read_all(0, 10_000)
    while len(events) < head:
        events += await store.read_all(events[-1].position, 10_000)
    messages = [
        (
            aio_pika.Message(
                body(e),
                message_id=str(e.event_id),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                headers={"position": e.position, "stream_id": e.stream_id},
            ),
            routing_key(e),
        )
        for e in events
    ]
    started = time.perf_counter()
    for i in range(0, len(messages), 500):
        await asyncio.gather(
            *(exchange.publish(m, k, mandatory=False) for m, k in messages[i : i + 500])
        )
    return head / (time.perf_counter() - started)


async def latency(url: str, store: EventStore, rate: float, seconds: float, data_dir: str) -> Any:
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    name = f"bench-latency-{uuid.uuid4().hex[:6]}"
    _, declared = await queue(channel, name)
    lag: list[float] = []
    wanted = int(rate * seconds)

    warm = asyncio.Event()

    async def on_message(message: Any) -> None:
        event = orjson.loads(message.body)
        sent = event["data"].get("sentAt")
        if event["data"].get("warmUp"):
            warm.set()
        elif sent is not None:
            lag.append((time.time() - sent) * 1000)
        await message.ack()

    await declared.consume(on_message)
    process = relay_process(url, data_dir)
    try:
        # Timing starts once the relay process is up and has published a first event.
        warm_up = NewEvent("InventoryUpdated", {**DATA, "warmUp": True}, metadata=META)
        await store.append({f"warm-{uuid.uuid4().hex[:6]}": (NO_STREAM, [warm_up])})
        await asyncio.wait_for(warm.wait(), 60)
        start = time.perf_counter()
        for i in range(wanted):
            at = start + i / rate
            await asyncio.sleep(max(at - time.perf_counter(), 0))
            stream = f"latency-{i}"
            event = NewEvent("InventoryUpdated", {**DATA, "sentAt": time.time()}, metadata=META)
            await store.append({stream: (NO_STREAM, [event])})
        deadline = time.monotonic() + 30
        while len(lag) < wanted and time.monotonic() < deadline:  # noqa: ASYNC110 - the consumer fills `lag`
            await asyncio.sleep(0.05)
    finally:
        process.terminate()
        process.wait(10)
        await declared.delete(if_unused=False, if_empty=False)
        await connection.close()
    lag.sort()
    return {
        "events": wanted,
        "received": len(lag),
        "p50Ms": round(statistics.median(lag), 2),
        "p99Ms": round(lag[int(len(lag) * 0.99) - 1], 2),
        "maxMs": round(lag[-1], 2),
    }


async def main(events: int, rounds: int, rate: float, seconds: float) -> None:
    with server() as server_url, tempfile.TemporaryDirectory() as data_dir:
        async with fresh_database(server_url) as url:
            pool = await asyncpg.create_pool(url, min_size=2, max_size=8, init=init_connection)
            assert pool is not None
            # Appends NOTIFY after commit, as the API's do: the relay wakes on them.
            notifier = CoalescingNotifier(pool, Signal())
            notifier.start()
            store = EventStore(pool, notifier=notifier)
            for i in range(events // 100):
                batch = [NewEvent("InventoryUpdated", DATA, metadata=META) for _ in range(100)]
                await store.append({f"bench-{i % 100}-{i // 100}": (NO_STREAM, batch)})
            head = await store.head()
            connection = await aio_pika.connect(AMQP_URL)
            channel = await connection.channel(publisher_confirms=True)
            name = f"bench-relay-{uuid.uuid4().hex[:6]}"
            exchange, declared = await queue(channel, name)
            ours, raw = [], []
            for _ in range(rounds):
                raw.append(await raw_rate(store, head, exchange))
                await declared.purge()
                ours.append(await relay_rate(url, pool, head, data_dir))
                await declared.purge()
            await declared.delete(if_unused=False, if_empty=False)
            await connection.close()
            timed = await latency(url, store, rate, seconds, data_dir)
            await notifier.stop()
            await pool.close()
    print(
        json.dumps(
            {
                "machine": machine(),
                "events": events,
                "relayEventsPerSec": [round(r) for r in ours],
                "rawPublishPerSec": [round(r) for r in raw],
                "ratio": round(statistics.median(ours) / statistics.median(raw), 3),
                "latency": {"rate": rate, **timed},
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds, args.rate, args.seconds))
