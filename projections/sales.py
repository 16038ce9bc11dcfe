"""The sales dashboard: orders placed, paid, shipped, cancelled and expired (each counted once
per order, when it happened), revenue (payments captured minus refunds), and units sold per
sku in orders that were not cancelled or expired. On the kit (projections/kit.py): a row of
totals, a row per sku, and a lookup of each order's lines to un-count a cancelled one."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

import asyncpg

from domain.aggregate import DomainEvent
from domain.order import (
    OrderCancelled,
    OrderExpired,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
)
from projections.kit import Change, Rows, Table, TableProjection
from projections.slice import Changes, LiveTopic, Loader, ReadModel

NAME = "sales"


class Totals(NamedTuple):
    id: int
    orders_placed: int
    orders_paid: int
    orders_shipped: int
    orders_cancelled: int
    revenue: Decimal
    position: int
    """The position of the last order event counted."""
    orders_expired: int


class ProductSales(NamedTuple):
    sku: str
    units_sold: int
    revenue: Decimal
    position: int


class OrderLines(NamedTuple):
    order_id: str
    lines: list[dict[str, Any]]
    """As placed: sku, quantity, unitPrice."""


TOTALS = Table(
    "sales_totals",
    Totals,
    key="id",
    initial=(Totals(1, 0, 0, 0, 0, Decimal(0), 0, 0),),
    # Added after the table shipped: 0 is right for every log written before OrderExpired.
    sql={"orders_expired": "integer NOT NULL DEFAULT 0"},
    added=("orders_expired",),
)
PRODUCTS = Table("sales_products", ProductSales, key="sku", indexes=("units_sold DESC, sku",))
ORDERS = Table("sales_orders", OrderLines, key="order_id", view=False, insert_only=True)
"""A lookup of the lines of every order placed, to un-count a cancelled or expired one."""


def sold(rows: Rows, sku: str, units: int, unit_price: Decimal, position: int) -> ProductSales:
    """`sku`'s row with `units` more sold (fewer: negative) at `unit_price`."""
    was = rows.get(PRODUCTS, sku)
    if was is None:
        return ProductSales(sku, units, unit_price * units, position)
    return ProductSales(sku, was.units_sold + units, was.revenue + unit_price * units, position)


ONLY_TOTALS = ((TOTALS, 1),)


class SalesProjection(TableProjection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table[Any], ...]] = (TOTALS, PRODUCTS, ORDERS)
    events: ClassVar[tuple[type, ...]] = (
        OrderPlaced,
        PaymentProcessed,
        OrderShipped,
        OrderCancelled,
        PaymentRefunded,
        OrderExpired,
    )

    def reads(self, event: DomainEvent, rows: Rows) -> Iterable[tuple[Table[Any], Hashable]]:
        match event:
            case OrderPlaced():
                return [(TOTALS, 1), *[(PRODUCTS, line.sku) for line in event.lines]]
            case OrderCancelled() | OrderExpired():
                order = rows.get(ORDERS, event.order_id)  # loaded first: it names the skus
                lines = order.lines if order else ()
                return [(TOTALS, 1), *[(PRODUCTS, line["sku"]) for line in lines]]
        return ONLY_TOTALS

    def evolve(self, rows: Rows, event: DomainEvent, position: int) -> Sequence[Change]:
        t = rows.get(TOTALS, 1)
        assert t is not None  # the table starts with it
        placed = paid = shipped = cancelled = expired = 0
        revenue = t.revenue
        changes: list[Change] = []
        match event:
            case OrderPlaced():  # an order's skus are distinct (domain/order.py)
                placed = 1
                changes.append(OrderLines(event.order_id, [x.as_json() for x in event.lines]))
                for x in event.lines:
                    changes.append(sold(rows, x.sku, x.quantity, x.unit_price, position))
            case PaymentProcessed():
                paid, revenue = 1, revenue + event.amount
            case OrderShipped():
                shipped = 1
            case OrderCancelled() | OrderExpired():
                order = rows.get(ORDERS, event.order_id)
                if order is None:
                    raise ValueError(f"{type(event).__name__} at {position}: unknown order")
                cancelled, expired = (1, 0) if isinstance(event, OrderCancelled) else (0, 1)
                for line in order.lines:
                    price, units = Decimal(line["unitPrice"]), -line["quantity"]
                    changes.append(sold(rows, line["sku"], units, price, position))
            case PaymentRefunded():
                revenue -= event.amount
        changes.append(
            Totals(
                1,
                t.orders_placed + placed,
                t.orders_paid + paid,
                t.orders_shipped + shipped,
                t.orders_cancelled + cancelled,
                revenue,
                position,
                t.orders_expired + expired,
            )
        )
        return changes


@dataclass(frozen=True, slots=True)
class DashboardView:
    orders_placed: int
    orders_paid: int
    orders_shipped: int
    orders_cancelled: int
    revenue: Decimal
    position: int
    """The read model's position when this view was read."""
    changed: int
    """The position of the last order event counted."""
    orders_expired: int = 0


@dataclass(frozen=True, slots=True)
class ProductSalesView:
    sku: str
    units_sold: int
    revenue: Decimal


async def dashboard(pool: asyncpg.Pool) -> DashboardView:
    """As of the projection's checkpoint: everything up to it is counted (the two move in one
    transaction, so one statement reads them consistently)."""
    row = await pool.fetchrow(
        "SELECT t.orders_placed, t.orders_paid, t.orders_shipped, t.orders_cancelled,"
        " t.orders_expired, t.revenue, t.position AS changed, p.position"
        " FROM readmodel.sales_totals t"
        " JOIN eventgraph.projections p ON p.name = $1 WHERE t.id = 1",
        NAME,
    )
    assert row is not None
    return DashboardView(
        row["orders_placed"],
        row["orders_paid"],
        row["orders_shipped"],
        row["orders_cancelled"],
        row["revenue"],
        row["position"],
        row["changed"],
        row["orders_expired"],
    )


async def top_products(pool: asyncpg.Pool, limit: int) -> list[ProductSalesView]:
    rows = await pool.fetch(
        "SELECT sku, units_sold, revenue FROM readmodel.sales_products WHERE units_sold > 0"
        " ORDER BY units_sold DESC, sku LIMIT $1",
        limit,
    )
    return [ProductSalesView(r["sku"], r["units_sold"], r["revenue"]) for r in rows]


def _dashboard(pool: asyncpg.Pool) -> Loader:
    async def load(
        _watched: Sequence[Hashable], _since: int, _fresh: Sequence[tuple[Hashable, int]]
    ) -> Changes:
        # One row: read it whole; a subscriber's slot drops it when it has not changed.
        view = await dashboard(pool)
        return Changes(view.position, [(DASHBOARD_KEY, view)])

    return load


DASHBOARD_KEY = "dashboard"
DASHBOARD = LiveTopic("sales dashboard", _dashboard)

READ_MODEL = ReadModel(SalesProjection(), (DASHBOARD,))
