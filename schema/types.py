"""The contract's object types, built from read-model rows (or, for a mutation whose view
cannot be read in time, from the command's own result)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import asyncpg
import strawberry
from strawberry.scalars import JSON

from domain import order as order_domain
from domain import product as product_domain
from eventstore.events import RecordedEvent
from schema.scalars import Position

OrderStatus = order_domain.OrderStatus
strawberry.enum(OrderStatus)  # the domain's own enum is the GraphQL one


@strawberry.type
class Product:
    sku: str

    @strawberry.field(description="Stable key for client caches: the sku.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.sku)

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

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Product:
        return cls(
            sku=row["sku"],
            name=row["name"],
            unit_price=row["unit_price"],
            on_hand=row["on_hand"],
            reserved=row["reserved"],
            available=row["on_hand"] - row["reserved"],
            position=row["position"],
            updated_at=row["updated_at"],
        )

    @classmethod
    def from_state(cls, state: product_domain.Product, position: int, at: datetime) -> Product:
        return cls(
            sku=state.sku,
            name=state.name,
            unit_price=state.unit_price,
            on_hand=state.on_hand,
            reserved=state.reserved,
            available=state.available,
            position=position,
            updated_at=at,
        )


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

    @classmethod
    def from_row(cls, row: asyncpg.Record | dict[str, Any]) -> Order:
        lines = [
            OrderLine(
                sku=line["sku"],
                quantity=line["quantity"],
                unit_price=Decimal(line["unitPrice"]),
                line_total=Decimal(line["unitPrice"]) * line["quantity"],
            )
            for line in row["lines"]
        ]
        return cls(
            id=strawberry.ID(row["order_id"]),
            customer_id=row["customer_id"],
            status=OrderStatus(row["status"]),
            lines=lines,
            total=row["total"],
            amount_paid=row["amount_paid"],
            placed_at=row["placed_at"],
            updated_at=row["updated_at"],
            version=row["version"],
            position=row["position"],
        )

    @classmethod
    def from_state(cls, state: order_domain.Order, position: int) -> Order:
        return cls.from_row(
            {
                "order_id": state.order_id,
                "customer_id": state.customer_id,
                "status": state.status.value,
                "lines": [line.as_json() for line in state.lines],
                "total": state.total,
                "amount_paid": state.amount_paid,
                "placed_at": state.placed_at,
                "updated_at": state.updated_at,
                "version": state.version,
                "position": position,
            }
        )


@strawberry.type
class ProductSales:
    sku: str
    units_sold: int
    revenue: Decimal


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


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo


@strawberry.type
class ProductEdge:
    cursor: str
    node: Product


@strawberry.type
class ProductConnection:
    edges: list[ProductEdge]
    page_info: PageInfo


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int
