"""Consuming EventGraph's events in another service, each applied exactly once.

The relay delivers at least once: after a crash or a lost connection it publishes again
from its last confirmed position, so a consumer may receive an event twice (with the same
`message_id`, the event id). `Consumer` makes that harmless: for each message it records
the event id in the consumer's own PostgreSQL, in the same transaction as the handler's
effects, and acknowledges only after that transaction commits. A duplicate finds its id
recorded and is acknowledged without running the handler; a crash before the commit leaves
the message unacknowledged, and RabbitMQ delivers it again.

A handler that raises stops the consumer, with the message requeued: a fault of the
database clears on the next run; an event the handler can never apply needs a fix (or a
dead-letter policy on the queue) before the consumer can go on.

Declare the queue (start the consumer once) before relying on the stream: the broker drops
what no queue is bound to, and a consumer added later starts from then; history is the
`events` query's.

Order: the relay publishes each stream's events in order, and RabbitMQ keeps that order in a
queue. The queue is declared single-active-consumer, so that several instances of a
consumer service never handle one queue's messages concurrently; messages are handled one
at a time.

Versions: events arrive upcast to their current `schemaVersion` (also the
`schema_version` header). Within a version, changes are only additive (new fields),
so a consumer ignores fields it does not know. A consumer that meets a version newer
than it was written for should stop (raise), not guess. A new version of an event means a
new consumer release. A consumer may keep an upcaster from the versions it knows to the
new one, as EventGraph does on read (`domain/upcasters.py`).

    async def on_order_placed(event: dict, conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO invoices ...", event["data"]["orderId"], ...)

    consumer = Consumer("amqp://…", pool, "billing", ["order.OrderPlaced"], on_order_placed)
    await consumer.run()  # until cancelled
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractIncomingMessage

from transport.relay import EXCHANGE

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], asyncpg.Connection], Awaitable[None]]

PROCESSED = """
CREATE TABLE IF NOT EXISTS eventgraph_processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    position     bigint,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
)
"""


class Consumer:
    """A durable queue `name` bound to `eventgraph.events` by `bindings` (routing keys such
    as `order.*` or `#`), whose messages `handle` applies once each."""

    def __init__(
        self,
        url: str,
        pool: asyncpg.Pool,
        name: str,
        bindings: Sequence[str],
        handle: Handler,
        *,
        prefetch: int = 100,
    ) -> None:
        self.url, self.pool, self.name = url, pool, name
        self.bindings, self.handle, self.prefetch = list(bindings), handle, prefetch
        self.applied = 0
        self.duplicates = 0

    async def run(self) -> None:
        """Consume until cancelled (or until the connection is lost: run it again)."""
        async with self.pool.acquire() as conn:
            await conn.execute(PROCESSED)
        connection = await aio_pika.connect(self.url, timeout=10)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            exchange = await channel.declare_exchange(
                EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(
                self.name, durable=True, arguments={"x-single-active-consumer": True}
            )
            for key in self.bindings:
                await queue.bind(exchange, key)
            async with queue.iterator() as messages:
                async for message in messages:
                    await self.apply(message)
        finally:
            await connection.close()

    async def apply(self, message: AbstractIncomingMessage) -> None:
        event = _event(message)
        if event is None:  # not one of ours: it would never apply; keep it out of the way
            log.warning("consumer %s: rejected a message that is not an event", self.name)
            await message.reject(requeue=False)
            return
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                first = await conn.fetchval(
                    "INSERT INTO eventgraph_processed_events (consumer, event_id, position)"
                    " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                    self.name,
                    message.message_id,
                    event.get("position"),
                )
                if first:
                    await self.handle(event, cast(asyncpg.Connection, conn))
        except Exception:
            log.exception("consumer %s: event %s not applied", self.name, message.message_id)
            await message.nack(requeue=True)
            raise
        await message.ack()
        if first:
            self.applied += 1
        else:
            self.duplicates += 1


def _event(message: AbstractIncomingMessage) -> dict[str, Any] | None:
    """The event a message carries, if it is one the relay published: a JSON object whose
    `eventId` is the message id, a UUID."""
    try:
        event = orjson.loads(message.body)
        same = isinstance(event, dict) and event.get("eventId") == message.message_id
        if same and uuid.UUID(str(message.message_id)):
            return cast(dict[str, Any], event)
    except (orjson.JSONDecodeError, ValueError):
        pass
    return None
