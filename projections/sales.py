"""The sales dashboard: orders placed, paid, shipped, cancelled and expired (each counted once
per order, when it happened), revenue (payments captured minus refunds), and units sold per
sku in orders that were not cancelled or expired."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import asyncpg
import orjson

from domain.aggregate import DomainEvent
from domain.codec import decode
from domain.order import (
    OrderCancelled,
    OrderExpired,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
)
from eventstore.events import RecordedEvent
from projections.base import add_column
from projections.slice import Changes, LiveTopic, Loader, ReadModel

NAME = "sales"

ORDER_EVENTS = {
    "OrderPlaced",
    "PaymentProcessed",
    "OrderShipped",
    "OrderCancelled",
    "PaymentRefunded",
    "OrderExpired",
}
RELEASING = ("OrderCancelled", "OrderExpired")
"""Events after which an order's units no longer count as sold."""


def evolve(
    totals: dict[str, Any],
    order_lines: dict[str, list[dict[str, Any]]],
    events: Sequence[tuple[DomainEvent, int]],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """Fold (event, position) pairs into the dashboard's `totals` and the known orders' lines,
    in place: pure, as every read model's evolve. Returns the orders placed in this batch
    (their lines) and the change in units and revenue per sku ([units, revenue, position])."""
    new_orders: dict[str, list[dict[str, Any]]] = {}
    sold: dict[str, list[Any]] = {}

    def count_lines(lines: list[dict[str, Any]], sign: int, position: int) -> None:
        for line in lines:
            entry = sold.setdefault(line["sku"], [0, Decimal(0), position])
            entry[0] += sign * line["quantity"]
            entry[1] += sign * Decimal(line["unitPrice"]) * line["quantity"]
            entry[2] = position

    for event, position in events:
        match event:
            case OrderPlaced():
                totals["orders_placed"] += 1
                lines = [line.as_json() for line in event.lines]
                new_orders[event.order_id] = order_lines[event.order_id] = lines
                count_lines(lines, +1, position)
            case PaymentProcessed():
                totals["orders_paid"] += 1
                totals["revenue"] += event.amount
            case OrderShipped():
                totals["orders_shipped"] += 1
            case OrderCancelled() | OrderExpired():
                totals[
                    "orders_cancelled" if isinstance(event, OrderCancelled) else "orders_expired"
                ] += 1
                if event.order_id not in order_lines:
                    raise ValueError(f"{type(event).__name__} at {position}: unknown order")
                count_lines(order_lines[event.order_id], -1, position)
            case PaymentRefunded():
                totals["revenue"] -= event.amount
        totals["position"] = position
    return new_orders, sold


class SalesProjection:
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    views: ClassVar[tuple[str, ...]] = ("sales_totals", "sales_products")

    def create_tables(self, schema: str) -> str:
        return f"""
        CREATE TABLE {schema}.sales_totals (
            id integer PRIMARY KEY CHECK (id = 1),
            orders_placed integer NOT NULL, orders_paid integer NOT NULL,
            orders_shipped integer NOT NULL, orders_cancelled integer NOT NULL,
            revenue numeric NOT NULL, position bigint NOT NULL,
            orders_expired integer NOT NULL DEFAULT 0
        );
        INSERT INTO {schema}.sales_totals VALUES (1, 0, 0, 0, 0, 0, 0, 0);
        CREATE TABLE {schema}.sales_products (
            sku text PRIMARY KEY, units_sold integer NOT NULL, revenue numeric NOT NULL,
            position bigint NOT NULL
        );
        CREATE INDEX ON {schema}.sales_products (units_sold DESC, sku);
        CREATE TABLE {schema}.sales_orders (order_id text PRIMARY KEY, lines jsonb NOT NULL);
        """

    def create_indexes(self, schema: str) -> str:
        # Added after the table shipped: 0 is right for every log written before OrderExpired.
        return add_column(schema, "sales_totals", "orders_expired", "integer NOT NULL DEFAULT 0")

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[RecordedEvent]
    ) -> None:
        relevant = [e for e in events if e.type in ORDER_EVENTS]
        if not relevant:
            return
        totals = dict(
            await conn.fetchrow(f"SELECT * FROM {schema}.sales_totals WHERE id = 1 FOR UPDATE")
            or {}
        )
        relevant = [e for e in relevant if e.position > totals["position"]]
        if not relevant:
            return
        cancelled_ids = [e.data["orderId"] for e in relevant if e.type in RELEASING]
        order_lines: dict[str, list[dict[str, Any]]] = {
            r["order_id"]: r["lines"]
            for r in await conn.fetch(
                f"SELECT order_id, lines FROM {schema}.sales_orders WHERE order_id = any($1)",
                cancelled_ids,
            )
        }
        events_at = [(decode(r.type, r.data, r.occurred_at), r.position) for r in relevant]
        new_orders, sold = evolve(totals, order_lines, events_at)

        await conn.execute(
            f"""UPDATE {schema}.sales_totals SET orders_placed = $1, orders_paid = $2,
                   orders_shipped = $3, orders_cancelled = $4, revenue = $5, position = $6,
                   orders_expired = $7
                WHERE id = 1""",
            totals["orders_placed"],
            totals["orders_paid"],
            totals["orders_shipped"],
            totals["orders_cancelled"],
            totals["revenue"],
            totals["position"],
            totals["orders_expired"],
        )
        if new_orders:
            await conn.execute(
                f"INSERT INTO {schema}.sales_orders"
                " SELECT * FROM unnest($1::text[], $2::text[]::jsonb[])",
                list(new_orders),
                [orjson.dumps(lines).decode() for lines in new_orders.values()],
            )
        if sold:
            await conn.execute(
                f"""INSERT INTO {schema}.sales_products AS p (sku, units_sold, revenue, position)
                    SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[], $4::bigint[])
                    ON CONFLICT (sku) DO UPDATE SET units_sold = p.units_sold + excluded.units_sold,
                        revenue = p.revenue + excluded.revenue, position = excluded.position""",
                list(sold),
                [v[0] for v in sold.values()],
                [v[1] for v in sold.values()],
                [v[2] for v in sold.values()],
            )


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
