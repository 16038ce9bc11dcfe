"""The contract's queries, over the read models (and, for `events`, the log itself)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import strawberry

from domain import ids, values
from domain import order as order_domain
from domain.errors import InvalidInput
from eventstore.store import EVENT_TYPE, STREAM_ID
from projections import orders, products, sales
from schema.context import Info
from schema.scalars import Position
from schema.types import (
    DomainEvent,
    Order,
    OrderConnection,
    OrderEdge,
    OrderStatus,
    PageInfo,
    Product,
    ProductConnection,
    ProductEdge,
    ProductSales,
)

T = TypeVar("T")

MAX_PAGE = 100
MAX_EVENTS_PAGE = 1_000


def given(value: T | None) -> T | None:
    """None for an argument the client left out."""
    return None if value is strawberry.UNSET else value


def event_filter(stream_id: str | None, types: list[str] | None) -> str | None:
    """Check an events query's or subscription's filter; the stream id in canonical form
    (an order's stream may be named with any spelling of the order id)."""
    if types is not None and (
        len(types) > 50 or not all(isinstance(t, str) and EVENT_TYPE.fullmatch(t) for t in types)
    ):
        raise InvalidInput("types: at most 50 event type names such as OrderPlaced")
    if stream_id is None:
        return None
    if isinstance(stream_id, str) and stream_id.startswith(order_domain.STREAM_PREFIX):
        raw = stream_id.removeprefix(order_domain.STREAM_PREFIX)
        return order_domain.stream_id(ids.order_id(raw, field="streamId's order id"))
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise InvalidInput("streamId must be 1 to 200 characters of letters, digits and ._:@/+=-")
    return stream_id


def valid_customer_id(value: str) -> str:
    if not values.is_clean_text(value) or not 1 <= len(value) <= values.MAX_SUB:
        raise InvalidInput(f"customerId must be 1 to {values.MAX_SUB} printable characters")
    return value


def page_size(first: int, maximum: int) -> int:
    if not 0 <= first <= maximum:
        raise InvalidInput(f"first must be between 0 and {maximum}")
    return first


@strawberry.type
class SalesDashboard:
    orders_placed: int
    orders_paid: int
    orders_shipped: int
    orders_cancelled: int
    revenue: Decimal = strawberry.field(description="Payments captured minus refunds.")
    position: Position
    orders_expired: int = strawberry.field(
        default=0, description="Orders not paid within the payment window (their stock released)."
    )

    @strawberry.field(description='Stable key for client caches: always "sales-dashboard".')
    def id(self) -> strawberry.ID:
        return strawberry.ID("sales-dashboard")

    @classmethod
    def from_view(cls, view: sales.DashboardView) -> SalesDashboard:
        return cls(
            orders_placed=view.orders_placed,
            orders_paid=view.orders_paid,
            orders_shipped=view.orders_shipped,
            orders_cancelled=view.orders_cancelled,
            revenue=view.revenue,
            position=view.position,
            orders_expired=view.orders_expired,
        )

    @strawberry.field(
        description="Best sellers by units in orders that were not cancelled or expired."
    )
    async def top_products(self, info: Info, limit: int = 5) -> list[ProductSales]:
        if not 0 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 0 and {MAX_PAGE}")
        best = await sales.top_products(info.context.pool, limit)
        return [ProductSales(sku=p.sku, units_sold=p.units_sold, revenue=p.revenue) for p in best]


@strawberry.type
class Query:
    @strawberry.field(description="Any signed-in user.")
    async def product(
        self, info: Info, sku: str, at_least: Position | None = strawberry.UNSET
    ) -> Product | None:
        info.context.require_user()
        values.sku(sku)
        await info.context.at_least(products.NAME, given(at_least))
        view = await products.product(info.context.pool, sku)
        return None if view is None else Product.from_view(view)

    @strawberry.field(description="Any signed-in user. Ordered by sku.")
    async def products(
        self,
        info: Info,
        first: int = 50,
        after: str | None = strawberry.UNSET,
        at_least: Position | None = strawberry.UNSET,
    ) -> ProductConnection:
        info.context.require_user()
        limit = page_size(first, MAX_PAGE)
        after_sku = None
        if given(after) is not None:
            [after_sku] = info.context.cursors.decode("products", str(after))
        await info.context.at_least(products.NAME, given(at_least))
        page = await products.products(info.context.pool, after_sku, limit)
        edges = [
            ProductEdge(
                cursor=info.context.cursors.encode("products", [v.sku]), node=Product.from_view(v)
            )
            for v in page.items
        ]
        return ProductConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
        )

    @strawberry.field(description="The order's customer or staff; another customer gets FORBIDDEN.")
    async def order(
        self, info: Info, id: strawberry.ID, at_least: Position | None = strawberry.UNSET
    ) -> Order | None:
        actor = info.context.actor
        order_id = ids.order_id(id, field="id")
        await info.context.at_least(orders.NAME, given(at_least))
        view = await orders.order(info.context.pool, order_id)
        if view is None:
            return None
        actor.require_access(view.customer_id)
        return Order.from_view(view)

    @strawberry.field(
        description=(
            "Newest first. A customer sees only their own orders; staff may filter by customerId."
        )
    )
    async def orders(
        self,
        info: Info,
        status: OrderStatus | None = strawberry.UNSET,
        customer_id: str | None = strawberry.UNSET,
        first: int = 20,
        after: str | None = strawberry.UNSET,
        at_least: Position | None = strawberry.UNSET,
    ) -> OrderConnection:
        actor = info.context.actor
        customer = given(customer_id)
        if customer is not None:
            customer = valid_customer_id(customer)
        if not actor.is_staff:
            actor.require_access(customer or actor.id, "a customer sees only their own orders")
            customer = actor.id
        limit = page_size(first, MAX_PAGE)
        before = None
        if given(after) is not None:
            placed_at, order_id = info.context.cursors.decode("orders", str(after))
            before = (datetime.fromisoformat(placed_at), order_id)
        await info.context.at_least(orders.NAME, given(at_least))
        page = await orders.orders(info.context.pool, customer, given(status), before, limit)
        cursors = info.context.cursors
        edges = [
            OrderEdge(
                cursor=cursors.encode("orders", [v.placed_at.isoformat(), v.order_id]),
                node=Order.from_view(v),
            )
            for v in page.items
        ]
        return OrderConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
            position=page.position,
        )

    @strawberry.field(description="Staff only.")
    async def sales_dashboard(
        self, info: Info, at_least: Position | None = strawberry.UNSET
    ) -> SalesDashboard:
        info.context.actor.require_staff()
        await info.context.at_least(sales.NAME, given(at_least))
        return SalesDashboard.from_view(await sales.dashboard(info.context.pool))

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
