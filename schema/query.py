"""The contract's queries."""

from __future__ import annotations

from typing import TypeVar

import strawberry

from domain.errors import InvalidInput
from domain.values import Actor
from schema.context import Info
from schema.scalars import Position
from schema.types import DomainEvent

T = TypeVar("T")

MAX_PAGE = 100
MAX_EVENTS_PAGE = 1_000


def given(value: T | None) -> T | None:
    """None for an argument the client left out."""
    return None if value is strawberry.UNSET else value


def page_size(first: int, maximum: int) -> int:
    if not 0 <= first <= maximum:
        raise InvalidInput(f"first must be between 0 and {maximum}")
    return first


def staff(actor: Actor) -> Actor:
    actor.require_staff()
    return actor


@strawberry.type
class Query:
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
        staff(info.context.actor)
        stream_id, types = given(stream_id), given(types)
        limit = page_size(first, MAX_EVENTS_PAGE)
        if limit == 0:
            return []
        if types is not None and (len(types) > 50 or any(len(t) > 100 for t in types)):
            raise InvalidInput("types: at most 50 names of at most 100 characters")
        if stream_id is not None and not 1 <= len(stream_id) <= 200:
            raise InvalidInput("streamId must be 1 to 200 characters")
        store = info.context.shop.store
        events = await store.read_all(after or 0, limit, stream_id=stream_id, types=types)
        return [DomainEvent.from_recorded(e) for e in events]
