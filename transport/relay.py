"""Events to other services: every event of the log, in position order, published to the
durable RabbitMQ topic exchange `eventgraph.events`, at least once.

Each event is one persistent message: routing key `<streamType>.<EventType>` (`order.
OrderPlaced`), `message_id` the event id, headers `position`, `stream_id`,
`stream_version`, `schema_version`, `correlation_id`, `signature`, and the body the event's
JSON as the `events` query returns it (upcast to its current version). `signature` is an
HMAC-SHA256 (hex) under the publish key (EVENTGRAPH_PUBLISH_KEY) over the body and the
identifying fields (message id, routing key, type and the headers above): anyone who can
publish to the exchange can send a well-formed event, only the key's holders a signed one,
and the consumer helper applies nothing else. The relay reads the log as a
projector does (commit-safe, from its own checkpoint), publishes a batch on a channel with
publisher confirms, and only once the broker has confirmed every message of the batch
moves its checkpoint (`eventgraph.relay_checkpoints`). So a crash, a killed process or a
lost broker connection at any moment means publishing again from the last confirmed
position: a consumer may see an event twice (same `message_id`), never miss one, and sees
each stream's events in order, since one channel publishes them in position order and
RabbitMQ keeps a channel's order into each queue. "Never miss one" holds for queues bound
when the event is published: the broker drops (and confirms) what no queue is bound to, as
any pub/sub does, so a consumer declares its queue before it relies on the stream, and a
consumer added later starts from then (history is the `events` query's, from position 0).
One relay leads at a time: an advisory lock elects it, like the projectors'; others stand by.

The rejected alternative, publishing from the command handler after its append (or in its
transaction), either loses the event when the process dies between the two or holds a
database transaction open on a broker round trip; an outbox would be a second copy of the
log, which the log itself already is."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractExchange

from eventstore.events import RecordedEvent
from eventstore.leadership import wait_to_lead
from eventstore.notify import Signal
from eventstore.store import CONNECTION_ERRORS as DATABASE_CONNECTION_ERRORS
from eventstore.store import EventStore
from support import metrics
from support.background import Backoff, reconnecting

log = logging.getLogger(__name__)

EXCHANGE: Final = "eventgraph.events"
MAX_INFLIGHT_BATCHES: Final = 8
"""Batches published and not yet confirmed at most, before the relay waits for the oldest."""
CONNECTION_ERRORS: Final = (
    *DATABASE_CONNECTION_ERRORS,
    asyncio.TimeoutError,
    aio_pika.exceptions.AMQPError,
)


def routing_key(event: RecordedEvent) -> str:
    """`<streamType>.<EventType>`: the stream id's prefix (`order-…` → `order`)."""
    prefix = event.stream_id.split("-", 1)[0]
    stream_type = "".join(c for c in prefix if c.isascii() and (c.isalnum() or c == "_"))
    return f"{stream_type or 'stream'}.{event.type}"


def body(event: RecordedEvent) -> bytes:
    """The event as the `events` query returns it."""
    return orjson.dumps(
        {
            "id": str(event.event_id),
            "position": event.position,
            "eventId": str(event.event_id),
            "streamId": event.stream_id,
            "streamVersion": event.stream_version,
            "type": event.type,
            "schemaVersion": event.schema_version,
            "data": event.data,
            "metadata": event.metadata,
            "occurredAt": event.occurred_at.isoformat(),
        }
    )


SIGNATURE_HEADER: Final = "signature"
SIGNED_HEADERS: Final = (
    "position",
    "stream_id",
    "stream_version",
    "schema_version",
    "correlation_id",
)


def _header_value(value: object) -> object:
    # The broker may hand a string header back as bytes: sign and verify the same text.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def signature(
    key: bytes,
    message_id: str | None,
    routing_key: str | None,
    type_: str | None,
    headers: Mapping[str, object],
    payload: bytes,
) -> str:
    """HMAC-SHA256 (hex) over what identifies the message and its body, so that no part a
    consumer relies on can be changed, or moved onto another message, without the key."""
    identity: list[object] = [message_id, routing_key, type_]
    identity += [_header_value(headers.get(name)) for name in SIGNED_HEADERS]
    signed = orjson.dumps(identity) + b"\n" + payload
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


def message(event: RecordedEvent, key: bytes) -> aio_pika.Message:
    correlation = event.metadata.get("correlationId")
    headers: dict[str, Any] = {
        "position": event.position,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "schema_version": event.schema_version,
        "correlation_id": correlation if isinstance(correlation, str) else None,
    }
    payload = body(event)
    message_id = str(event.event_id)
    headers[SIGNATURE_HEADER] = signature(
        key, message_id, routing_key(event), event.type, headers, payload
    )
    return aio_pika.Message(
        payload,
        message_id=message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="application/json",
        type=event.type,
        timestamp=event.occurred_at,
        headers=headers,
    )


class Relay:
    def __init__(
        self,
        dsn: str,
        store: EventStore,
        url: str,
        log_signal: Signal,
        *,
        key: bytes,
        name: str = "rabbitmq",
        batch_size: int = 500,
        poll_interval: float = 0.1,
        standby_interval: float = 0.5,
    ) -> None:
        self._dsn = dsn
        self._store = store
        self._url = url
        self._signal = log_signal
        if not key:
            raise ValueError("the relay signs every message: it needs a publish key")
        self._key = key
        self.name = name
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self.role = "starting"
        self.position = 0
        """The last position the broker confirmed, as this process last knew it."""
        self._loop = reconnecting("eventgraph-relay", self._session, expected=CONNECTION_ERRORS)

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _session(self, backoff: Backoff) -> None:
        self.role = "connecting"
        conn = await asyncpg.connect(
            self._dsn, server_settings={"application_name": "eventgraph-relay"}
        )
        try:
            self.role = "standby"
            await wait_to_lead(conn, f"eventgraph.relay.{self.name}", self._standby_interval)
            await conn.execute(
                "INSERT INTO eventgraph.relay_checkpoints (name) VALUES ($1)"
                " ON CONFLICT (name) DO NOTHING",
                self.name,
            )
            self.position = await conn.fetchval(
                "SELECT position FROM eventgraph.relay_checkpoints WHERE name = $1", self.name
            )
            broker = await aio_pika.connect(self._url, timeout=10)
            try:
                channel = await broker.channel(publisher_confirms=True)
                exchange = await channel.declare_exchange(
                    EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
                )
                self.role = "leader"
                log.info("relay %s: leading from position %d", self.name, self.position)
                backoff.reset()
                await self._lead(conn, broker, exchange)
            finally:
                await asyncio.shield(_close(broker))
        finally:
            self.role = "reconnecting"
            if not conn.is_closed():
                conn.terminate()

    async def _lead(
        self, conn: asyncpg.Connection, broker: Any, exchange: AbstractExchange
    ) -> None:
        """Publish batch after batch without waiting for the broker's confirms (RabbitMQ
        confirms a persistent message once it is on disk, which it batches: waiting would
        hold every later event back for a disk flush); the checkpoint follows the confirmed
        prefix. One channel, in position order, so the broker keeps each stream's order."""
        inflight: deque[tuple[int, asyncio.Future[Any]]] = deque()
        position = self.position
        try:
            while True:
                if broker.is_closed:
                    raise ConnectionError("the broker closed the connection")
                await self._settle(conn, inflight, wait=len(inflight) >= MAX_INFLIGHT_BATCHES)
                armed = self._signal.armed()
                events = await self._store.read_all(position, self._batch_size)
                if events:
                    publishes = [
                        exchange.publish(message(e, self._key), routing_key(e), mandatory=False)
                        for e in events
                    ]
                    inflight.append((events[-1].position, asyncio.gather(*publishes)))
                    position = events[-1].position
                    continue
                quick = self._store.frontier.waiting_on_holes
                woken = asyncio.ensure_future(
                    Signal.wait(armed, 0.005 if quick else self._poll_interval)
                )
                waiting: set[asyncio.Future[Any]] = {woken}
                if inflight:
                    waiting.add(inflight[0][1])
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
        finally:
            for _, confirms in inflight:
                confirms.cancel()
                confirms.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _settle(
        self,
        conn: asyncpg.Connection,
        inflight: deque[tuple[int, asyncio.Future[Any]]],
        *,
        wait: bool,
    ) -> None:
        """Move the checkpoint over the batches the broker has confirmed, oldest first; a
        refused or lost publication raises (the session starts again from the checkpoint)."""
        confirmed = self.position
        count = 0
        while inflight and (wait or inflight[0][1].done()):
            last, confirms = inflight[0]
            count += len(await confirms)
            inflight.popleft()
            confirmed = last
            wait = False
        if confirmed > self.position:
            await conn.execute(
                "UPDATE eventgraph.relay_checkpoints SET position = $2, updated_at = now()"
                " WHERE name = $1 AND position < $2",
                self.name,
                confirmed,
            )
            self.position = confirmed
            metrics.RELAY_PUBLISHED.inc(count)
            metrics.RELAY_CHECKPOINT.set(confirmed)


async def _close(broker: Any) -> None:
    try:
        await asyncio.wait_for(broker.close(), 5)
    except Exception as exc:  # closing a connection that is already gone
        log.debug("relay: closing the broker connection: %r", exc)
