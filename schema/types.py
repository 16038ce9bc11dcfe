"""The contract's object types, built from the read models' typed views (or, for a mutation
whose view cannot be read in time, from the command's own result)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

import strawberry
from strawberry.scalars import JSON

from domain import order as order_domain
from domain import product as product_domain
from eventstore.events import RecordedEvent
from projections import ratings
from projections.orders import OrderView
from projections.products import ProductView
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
        description="The read model's position when this view was read (see Positions on views)."
    )
    updated_at: datetime
    low_on_stock: bool = strawberry.field(
        default=False,
        description=(
            "Available stock fell below the shop's low-stock threshold"
            " (EVENTGRAPH_LOW_STOCK_THRESHOLD) and has not come back to it."
        ),
    )
    low_on_stock_since: datetime | None = strawberry.field(
        default=None, description="When it was flagged low on stock; null while it is not."
    )

    @strawberry.field(description="Average review rating, 1 to 5; null before the first review.")
    async def rating(self, info: strawberry.Info) -> float | None:
        view = await info.context.loader(ratings.ratings_of).load(self.sku)
        return None if view is None else view.rating

    @strawberry.field(description="How many customers reviewed this product.")
    async def review_count(self, info: strawberry.Info) -> int:
        view = await info.context.loader(ratings.ratings_of).load(self.sku)
        return 0 if view is None else view.review_count

    @classmethod
    def from_view(cls, view: ProductView) -> Product:
        return cls(
            sku=view.sku,
            name=view.name,
            unit_price=view.unit_price,
            on_hand=view.on_hand,
            reserved=view.reserved,
            available=view.available,
            position=view.position,
            updated_at=view.updated_at,
            low_on_stock=view.low_on_stock_since is not None,
            low_on_stock_since=view.low_on_stock_since,
        )

    @classmethod
    def from_state(cls, state: product_domain.Product, position: int, at: datetime) -> Product:
        view = ProductView(
            state.sku,
            state.name,
            state.unit_price,
            state.on_hand,
            state.reserved,
            position,
            at,
            position,
        )
        found = cls.from_view(view)
        found.low_on_stock = state.low_below is not None  # since when: the products query
        return found


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
        description="The read model's position when this view was read (see Positions on views)."
    )
    expires_at: datetime | None = strawberry.field(
        default=None, description="While PLACED: when it expires unless paid. Otherwise null."
    )

    @classmethod
    def from_view(cls, view: OrderView) -> Order:
        return cls(
            id=strawberry.ID(view.order_id),
            customer_id=view.customer_id,
            status=view.status,
            lines=[
                OrderLine(
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    line_total=line.line_total,
                )
                for line in view.lines
            ],
            total=view.total,
            amount_paid=view.amount_paid,
            placed_at=view.placed_at,
            updated_at=view.updated_at,
            version=view.version,
            position=view.position,
            expires_at=view.expires_at,
        )

    @classmethod
    def from_state(cls, state: order_domain.Order, position: int) -> Order:
        view = OrderView(
            state.order_id,
            state.customer_id,
            state.status,
            state.lines,
            state.total,
            state.amount_paid,
            state.placed_at,
            state.updated_at,
            state.version,
            position,
            position,
            state.expires_at,
        )
        return cls.from_view(view)


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
    position: Position = strawberry.field(
        description=(
            "The orders read model's position when this page was read: start a feed"
            " (myOrders, orders) with after = it, and it misses nothing since."
        )
    )


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
