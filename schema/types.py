"""The object types every feature shares: `DomainEvent`, which every mutation payload carries
and the `events` query and subscription return. A feature's own types are in its module
(`schema/products.py`: Product, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from eventstore.events import RecordedEvent
from schema.scalars import Position


@strawberry.type
class DomainEvent:
    position: Position

    @strawberry.field(description="Stable key for client caches: the eventId.")
    def id(self) -> strawberry.ID:
        return self.event_id

    event_id: strawberry.ID
    stream_id: str
    stream_version: int
    type: str = strawberry.field(
        description="Past tense, e.g. OrderPlaced, PaymentProcessed, InventoryUpdated."
    )
    schema_version: int = strawberry.field(
        description="The event's schema version after upcasting: always the current one."
    )
    data: JSON
    metadata: JSON = strawberry.field(
        description="correlationId, causationId, actor and whatever else the command recorded."
    )
    occurred_at: datetime

    @classmethod
    def from_recorded(cls, e: RecordedEvent) -> DomainEvent:
        return cls(
            position=e.position,
            event_id=strawberry.ID(str(e.event_id)),
            stream_id=e.stream_id,
            stream_version=e.stream_version,
            type=e.type,
            schema_version=e.schema_version,
            data=cast(JSON, e.data),
            metadata=cast(JSON, e.metadata),
            occurred_at=e.occurred_at,
        )
