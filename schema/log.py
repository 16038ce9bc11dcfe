"""The event log itself in the API, for staff: the `events` query (a page of the log) and
subscription (catch-up, then live: every event once, in order, no gaps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import strawberry

from domain import registry
from domain.errors import InvalidInput
from eventstore.notify import Signal
from eventstore.store import EVENT_TYPE, STREAM_ID
from schema.context import Info
from schema.errors import CONNECTION_LOST
from schema.feature import Feature
from schema.paging import given, page_size
from schema.scalars import Position
from schema.types import DomainEvent

MAX_EVENTS_PAGE = 1_000


def event_filter(stream_id: str | None, types: list[str] | None) -> str | None:
    """Check an events query's or subscription's filter; the stream id in canonical form
    (an aggregate may allow several spellings of its ids: an order id, for one)."""
    if types is not None and (
        len(types) > 50 or not all(isinstance(t, str) and EVENT_TYPE.fullmatch(t) for t in types)
    ):
        raise InvalidInput("types: at most 50 event type names such as OrderPlaced")
    if stream_id is None:
        return None
    aggregate = None
    if isinstance(stream_id, str):
        with contextlib.suppress(LookupError):
            aggregate = registry.of_stream(stream_id)
    if aggregate is not None:
        raw = stream_id.removeprefix(aggregate.prefix)
        stream_id = aggregate.prefix + aggregate.canonical_id(raw)
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise InvalidInput("streamId must be 1 to 200 characters of letters, digits and ._:@/+=-")
    return stream_id


@strawberry.type
class LogQuery:
    @strawberry.field(
        description="Staff only. The raw log in position order, upcast to current schema versions."
    )
    async def events(
        self,
        info: Info,
        after: Position | None = 0,
        first: int = 100,
        stream_id: str | None = strawberry.UNSET,
        types: list[str] | None = strawberry.UNSET,
    ) -> list[DomainEvent]:
        info.context.actor.require_staff()
        kinds = given(types)
        stream = event_filter(given(stream_id), kinds)
        limit = page_size(first, MAX_EVENTS_PAGE)
        if limit == 0:
            return []
        events = await info.context.services.store.read_all(
            after or 0, limit, stream_id=stream, types=kinds
        )
        return [DomainEvent.from_recorded(e) for e in events]


@strawberry.type
class LogSubscription:
    @strawberry.subscription(
        description=(
            "Staff only. Catch-up from after, then live: every event once, in order, no gaps."
        )
    )
    async def events(
        self,
        info: Info,
        after: Position | None = 0,
        stream_id: str | None = strawberry.UNSET,
        types: list[str] | None = strawberry.UNSET,
    ) -> AsyncGenerator[DomainEvent, None]:
        info.context.actor.require_staff()
        kinds = given(types)
        stream = event_filter(given(stream_id), kinds)
        store = info.context.services.store
        signal = info.context.services.log_signal
        position = after or 0
        while True:
            armed = signal.armed()
            try:
                safe = await store.head()
                batch = await store.read_all(position, 500, stream_id=stream, types=kinds)
            except CONNECTION_LOST:  # the database is back soon: resume from `position`
                await asyncio.sleep(0.2)
                continue
            for event in batch:
                yield DomainEvent.from_recorded(event)
            if len(batch) == 500:
                position = batch[-1].position
                continue
            # Everything matching up to `safe` has been read (read_all went at least as far).
            position = max(position, safe, batch[-1].position if batch else 0)
            await Signal.wait(armed, 0.005 if store.frontier.waiting_on_holes else 1.0)


FEATURE = Feature(query=LogQuery, subscription=LogSubscription)
