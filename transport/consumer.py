"""Consuming EventGraph's events in another service, each applied exactly once.

The relay delivers at least once: after a crash or a lost connection it publishes again
from its last confirmed position, so a consumer may receive an event twice (with the same
`message_id`, the event id). `Consumer` makes that harmless: for each message it records
the event id in the consumer's own PostgreSQL, in the same transaction as the handler's
effects, and acknowledges only after that transaction commits. A duplicate finds its id
recorded and is acknowledged without running the handler; a crash before the commit leaves
the message unacknowledged, and RabbitMQ delivers it again.

Only signed messages are applied: each carries the relay's HMAC-SHA256 under the publish key
(`signature` header; EVENTGRAPH_PUBLISH_KEY, which the consumer is given too). To rotate the
key, give the consumer a list, the new key and the old (`key=[new, old]`; any of them
verifies), change the relays over, then drop the old one from the list. A message
without it, with a wrong one, or that is not an event, is never handed to the handler: it
goes to the consumer's dead-letter queue (`<name>.dead-letter`, bound to the direct exchange
`eventgraph.dead-letter` by the consumer's name) with the reason in the header
`x-eventgraph-reason`, and the consumer goes on.

A handler that raises is tried again, in place (a short growing pause between tries, the
queue's order kept), up to `max_attempts` times in all; then that message is dead-lettered
with the last error and the consumer goes on with the next, so one event the handler can
never apply does not stop every later one. Three failures are not the message's: a lost
database connection (the consumer stops with the message requeued: run it again once the
database is back); an error the database gives while it is busy or failing over
(serialization failure, deadlock, a read-only transaction, too many connections, an
operator's intervention: SQLSTATE classes 40, 53, 57 but 57014, and 25006), tried again with
no limit on tries, the pause growing up to `max_retry_pause`, so that a failover of a few
seconds dead-letters nothing (a handler that wraps such an error keeps it as `__cause__`:
`raise ... from exc`); and `StopConsuming`, which a handler raises to stop with the message
requeued, e.g. for a `schemaVersion` newer than it knows. Dead-lettered messages keep their
body and headers: publish one back to `eventgraph.events` (with its routing key,
`x-eventgraph-routing-key`) once fixed, and the consumer applies it, once.

Personal data: a shipping address or email arrives in clear while its customer's key exists,
and as null once the customer is forgotten (the relay reads the log as everyone does). What a
consumer stored before stays with it: give `on_forgotten`, which receives each
`CustomerForgotten` (routing key `customer.CustomerForgotten`, bound for you), exactly once
like any event, to erase that customer's copies in the same transaction as the record of it.
EventGraph cannot reach copies elsewhere (a consumer's backups, logs, mailboxes): each holder
of a copy answers for it.

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
than it was written for should stop (raise `StopConsuming`), not guess. A new version of an
event means a new consumer release. A consumer may keep an upcaster from the versions it
knows to the new one, as EventGraph does on read (`domain/upcasters.py`).

    async def on_order_placed(event: dict, conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO invoices ...", event["data"]["orderId"], ...)

    consumer = Consumer(
        "amqp://…", pool, "billing", ["order.OrderPlaced"], on_order_placed, key=publish_key
    )
    await consumer.run()  # until cancelled
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, cast

import aio_pika
import asyncpg
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from eventstore.store import CONNECTION_ERRORS
from transport.relay import EXCHANGE, SIGNATURE_HEADER, signature

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], asyncpg.Connection], Awaitable[None]]

DEAD_LETTER_EXCHANGE: Final = "eventgraph.dead-letter"
REASON_HEADER: Final = "x-eventgraph-reason"
MAX_REASON_CHARS: Final = 1000

# The database's own state, not the event's: worth waiting out, never a reason to give an event
# up. 57014 (query_canceled) stays the handler's: a statement timeout it hits every time would
# otherwise hold the queue for ever.
TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57"})
TRANSIENT_SQLSTATES: Final = frozenset({"25006"})  # read-only transaction: a standby, mid-failover
NOT_TRANSIENT_SQLSTATES: Final = frozenset({"57014"})

PROCESSED = """
CREATE TABLE IF NOT EXISTS eventgraph_processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    position     bigint,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
)
"""


FORGOTTEN_TYPE = "CustomerForgotten"
FORGOTTEN = f"customer.{FORGOTTEN_TYPE}"
"""The routing key of the event that asks every consumer to erase a customer's copies."""


class StopConsuming(Exception):
    """Raised by a handler: stop the consumer with this message requeued, not dead-lettered
    (a condition the next release, not a retry, will fix)."""


class Consumer:
    """A durable queue `name` bound to `eventgraph.events` by `bindings` (routing keys such
    as `order.*` or `#`), whose signed messages `handle` applies once each."""

    def __init__(
        self,
        url: str,
        pool: asyncpg.Pool,
        name: str,
        bindings: Sequence[str],
        handle: Handler,
        *,
        key: str | bytes | Sequence[str | bytes],
        max_attempts: int = 5,
        retry_pause: float = 0.1,
        max_retry_pause: float = 5.0,
        prefetch: int = 100,
        on_forgotten: Handler | None = None,
    ) -> None:
        given = [key] if isinstance(key, (str, bytes)) else list(key)
        if not given or not all(given):
            raise ValueError("a consumer verifies every message: it needs the publish key")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url, self.pool, self.name = url, pool, name
        self.bindings, self.handle, self.prefetch = list(bindings), handle, prefetch
        self.on_forgotten = on_forgotten
        """Erases a forgotten customer's copies (see the module's docstring)."""
        if on_forgotten is not None and FORGOTTEN not in self.bindings:
            self.bindings.append(FORGOTTEN)
        self.keys = [k.encode() if isinstance(k, str) else bytes(k) for k in given]
        self.max_attempts, self.retry_pause = max_attempts, retry_pause
        self.max_retry_pause = max_retry_pause
        self.dead_letter_queue = f"{name}.dead-letter"
        self.applied = 0
        self.duplicates = 0
        self.dead_lettered = 0
        self._dead_letters: AbstractExchange | None = None

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
            # Confirmed publications, so that a message is acknowledged only once its
            # dead-lettered copy is safely with the broker.
            confirmed = await connection.channel(publisher_confirms=True)
            self._dead_letters = await confirmed.declare_exchange(
                DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
            )
            dead = await confirmed.declare_queue(self.dead_letter_queue, durable=True)
            await dead.bind(self._dead_letters, self.name)
            queue = await channel.declare_queue(
                self.name, durable=True, arguments={"x-single-active-consumer": True}
            )
            for key in self.bindings:
                await queue.bind(exchange, key)
            async with queue.iterator() as messages:
                async for message in messages:
                    await self.apply(message)
        finally:
            self._dead_letters = None
            await connection.close()

    async def apply(self, message: AbstractIncomingMessage) -> None:
        if not self.signed(message):
            await self.dead_letter(message, "unsigned, or the signature does not match")
            return
        event = _event(message)
        if event is None:  # signed, yet not one of ours: it would never apply
            await self.dead_letter(message, "not an event")
            return
        attempt = 0
        waits = 0
        while True:
            try:
                first = await self._apply_once(message, event)
            except (*CONNECTION_ERRORS, StopConsuming):
                log.exception("consumer %s: stopping at event %s", self.name, message.message_id)
                await message.nack(requeue=True)
                raise
            except Exception as exc:
                if _transient(exc):
                    waits += 1
                    pause = min(self.retry_pause * 2 ** min(waits - 1, 30), self.max_retry_pause)
                    log.warning(
                        "consumer %s: event %s waits for the database (try %d, again in %.2fs): %r",
                        self.name,
                        message.message_id,
                        waits,
                        pause,
                        exc,
                    )
                    await asyncio.sleep(pause)
                    continue
                attempt += 1
                log.warning(
                    "consumer %s: event %s not applied (attempt %d of %d): %r",
                    self.name,
                    message.message_id,
                    attempt,
                    self.max_attempts,
                    exc,
                )
                if attempt == self.max_attempts:
                    reason = f"the handler failed {attempt} times; last: {exc!r}"
                    await self.dead_letter(message, reason)
                    return
                await asyncio.sleep(
                    min(self.retry_pause * 2 ** (attempt - 1), self.max_retry_pause)
                )
                continue
            await message.ack()
            if first:
                self.applied += 1
            else:
                self.duplicates += 1
            return

    async def _apply_once(self, message: AbstractIncomingMessage, event: dict[str, Any]) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            first = await conn.fetchval(
                "INSERT INTO eventgraph_processed_events (consumer, event_id, position)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                self.name,
                message.message_id,
                event.get("position"),
            )
            if first:
                forgotten = self.on_forgotten is not None and event.get("type") == FORGOTTEN_TYPE
                handle = self.on_forgotten if forgotten and self.on_forgotten else self.handle
                await handle(event, cast(asyncpg.Connection, conn))
        return bool(first)

    def signed(self, message: AbstractIncomingMessage) -> bool:
        given = message.headers.get(SIGNATURE_HEADER)
        if isinstance(given, bytes):
            given = given.decode("ascii", "replace")
        if not isinstance(given, str):
            return False
        matches = [
            hmac.compare_digest(
                given.encode(),
                signature(
                    key,
                    message.message_id,
                    message.routing_key,
                    message.type,
                    message.headers,
                    message.body,
                ).encode(),
            )
            for key in self.keys  # every key, so the time taken tells nothing of which matched
        ]
        return any(matches)

    async def dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Move the message to this consumer's dead-letter queue, saying why, then
        acknowledge it; if the copy cannot be confirmed, the message stays unacknowledged
        (redelivered), never lost."""
        log.error("consumer %s: dead-lettered %s: %s", self.name, message.message_id, reason)
        if self._dead_letters is None:  # apply() called outside run(): nowhere to keep it
            await message.reject(requeue=False)
        else:
            headers = dict(message.headers)
            headers[REASON_HEADER] = reason[:MAX_REASON_CHARS]
            headers["x-eventgraph-routing-key"] = message.routing_key
            copy = aio_pika.Message(
                message.body,
                headers=headers,
                message_id=message.message_id,
                type=message.type,
                content_type=message.content_type,
                timestamp=message.timestamp,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await self._dead_letters.publish(copy, self.name)
            await message.ack()
        self.dead_lettered += 1


def _transient(exc: BaseException) -> bool:
    """Whether `exc`, or an error it was raised from, is the database's passing state."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate not in NOT_TRANSIENT_SQLSTATES:
            transient = (
                sqlstate in TRANSIENT_SQLSTATES or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
            )
            if transient:
                return True
        cause, seen = cause.__cause__, seen + 1
    return False


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
