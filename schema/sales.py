"""The staff's sales dashboard in the API: the `salesDashboard` query and live view, over the
sales read model (which follows orders' events)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from decimal import Decimal

import strawberry

from domain.errors import InvalidInput
from projections import sales
from schema.context import Info
from schema.feature import Feature
from schema.paging import MAX_PAGE, given
from schema.scalars import Position
from schema.sharing import shared


@strawberry.type
class ProductSales:
    sku: str
    units_sold: int
    revenue: Decimal


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
class SalesQuery:
    @strawberry.field(description="Staff only.")
    async def sales_dashboard(
        self, info: Info, at_least: Position | None = strawberry.UNSET
    ) -> SalesDashboard:
        info.context.actor.require_staff()
        await info.context.at_least(sales.NAME, given(at_least))
        return SalesDashboard.from_view(await sales.dashboard(info.context.pool))


@strawberry.type
class SalesSubscription:
    @strawberry.subscription(description="Staff only.")
    @shared("role")
    async def sales_dashboard(self, info: Info) -> AsyncGenerator[SalesDashboard, None]:
        info.context.actor.require_staff()
        live = info.context.services.live
        await info.context.at_least(sales.NAME)
        first = await sales.dashboard(info.context.pool)
        key = sales.DASHBOARD_KEY
        async with contextlib.aclosing(live.watch(sales.DASHBOARD, key, first)) as views:
            async for view in views:
                yield SalesDashboard.from_view(view)


FEATURE = Feature(query=SalesQuery, subscription=SalesSubscription)
