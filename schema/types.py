"""The contract's object types."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import cast

import strawberry
from strawberry.scalars import JSON

from eventstore.events import RecordedEvent
from schema.scalars import Position


@strawberry.enum
class OrderStatus(Enum):
    PLACED = "PLACED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


@strawberry.type
class Product:
    sku: str
    name: str
    unit_price: Decimal
    on_hand: int = strawberry.field(description="Units physically in stock.")
    reserved: int = strawberry.field(
        description="Units held by placed or paid orders that have not shipped."
    )
    available: int = strawberry.field(description="onHand - reserved: what a new order can take.")
    position: Position = strawberry.field(
        description="Position of the last event applied to this view."
    )
    updated_at: datetime


@strawberry.type
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@strawberry.type
class Order:
    id: strawberry.ID
    customer_id: str
    status: OrderStatus
    lines: list[OrderLine]
    total: Decimal
    amount_paid: Decimal
    placed_at: datetime
    updated_at: datetime
    version: int = strawberry.field(
        description="Version of the order's own stream: 1 right after it was placed."
    )
    position: Position = strawberry.field(
        description="Position of the last event applied to this view."
    )


@strawberry.type
class DomainEvent:
    position: Position
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


@strawberry.type
class ProductPayload:
    sku: str
    position: Position = strawberry.field(
        description="Global position of the last event this command appended."
    )
    events: list[DomainEvent]
    product: Product = strawberry.field(
        description="The product view as of position (read your own write)."
    )


@strawberry.type
class OrderPayload:
    order_id: strawberry.ID
    position: Position
    events: list[DomainEvent]
    order: Order = strawberry.field(
        description="The order view as of position (read your own write)."
    )


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int
