"""Orders with their lines, for one order by id and for each customer's orders, newest first
(the index on customer, placed_at): table, evolve, typed view, queries and live topics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import asyncpg

from domain.aggregate import DomainEvent
from domain.codec import encode_state
from domain.contact import ShippingAddress
from domain.order import (
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    OrderStatus,
    PaymentProcessed,
    PaymentRefunded,
)
from eventstore.events import RecordedEvent
from projections.base import Page, Row, RowProjection
from projections.slice import LiveTopic, ReadModel, changed_rows, read_position

NAME = "orders"
ORDER_EVENTS = (
    OrderPlaced,
    PaymentProcessed,
    OrderShipped,
    OrderCancelled,
    PaymentRefunded,
    OrderExpired,
)


@dataclass(frozen=True, slots=True)
class OrderView:
    order_id: str
    customer_id: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    total: Decimal
    amount_paid: Decimal
    placed_at: datetime
    updated_at: datetime
    version: int
    position: int
    """The read model's position when this view was read (see "Positions on views")."""
    changed: int
    """The position of the last event that changed this order."""
    expires_at: datetime | None = None
    """While PLACED: its payment deadline, if it has one."""
    shipping_address: ShippingAddress | None = None
    """Personal data, as `email`: None when none was given, or once the customer was
    forgotten."""
    email: str | None = None

    @classmethod
    def of(cls, row: asyncpg.Record | dict[str, Any], position: int | None = None) -> OrderView:
        lines = tuple(
            OrderLine(line["sku"], line["quantity"], Decimal(line["unitPrice"]))
            for line in row["lines"]
        )
        return cls(
            row["order_id"],
            row["customer_id"],
            OrderStatus(row["status"]),
            lines,
            row["total"],
            row["amount_paid"],
            row["placed_at"],
            row["updated_at"],
            row["version"],
            row["read_position"] if position is None else position,
            row["position"],
            row["expires_at"],
            _address(row.get("shipping_address")),
            row.get("email"),
        )


def _address(data: dict[str, Any] | None) -> ShippingAddress | None:
    if not data:
        return None
    return ShippingAddress(
        data["name"],
        data["line1"],
        data.get("line2"),
        data["city"],
        data["postalCode"],
        data["country"],
    )


class OrdersProjection(RowProjection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    views: ClassVar[tuple[str, ...]] = ("orders",)
    table: ClassVar[str] = "orders"
    key: ClassVar[str] = "order_id"
    columns: ClassVar[tuple[tuple[str, str], ...]] = (
        ("order_id", "text"),
        ("customer_id", "text NOT NULL"),
        ("status", "text NOT NULL"),
        ("lines", "jsonb NOT NULL"),
        ("total", "numeric NOT NULL"),
        ("amount_paid", "numeric NOT NULL"),
        ("placed_at", "timestamptz NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
        ("version", "integer NOT NULL"),
        ("position", "bigint NOT NULL"),
        ("expires_at", "timestamptz"),
        ("shipping_address", "jsonb"),
        ("email", "text"),
    )
    added_columns: ClassVar[tuple[str, ...]] = ("expires_at", "shipping_address", "email")

    def create_tables(self, schema: str) -> str:
        return super().create_tables(schema) + (
            f"\nCREATE INDEX ON {schema}.orders (customer_id, placed_at DESC, order_id DESC);"
            f"\nCREATE INDEX ON {schema}.orders (placed_at DESC, order_id DESC);"
        )

    def create_indexes(self, schema: str) -> str:
        # A customer's feed resumed from a position reads that customer's changes after it.
        return super().create_indexes(schema) + (
            f"\nCREATE INDEX IF NOT EXISTS orders_customer_position_idx"
            f" ON {schema}.orders (customer_id, position);"
        )

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[RecordedEvent]
    ) -> None:
        """Row by row, but for `CustomerForgotten`, which erases the personal data of every
        order of that customer placed before it (and moves their position, so live views
        push the erased order): the batch is applied in runs between those."""
        run: list[RecordedEvent] = []
        for recorded in events:
            if recorded.type != "CustomerForgotten":
                run.append(recorded)
                continue
            await super().apply(conn, schema, run)
            run = []
            await conn.execute(
                f"UPDATE {schema}.orders SET shipping_address = NULL, email = NULL,"
                " position = $2, updated_at = $3"
                " WHERE customer_id = $1 AND position < $2"
                " AND (shipping_address IS NOT NULL OR email IS NOT NULL)",
                recorded.data["customerId"],
                recorded.position,
                recorded.occurred_at,
            )
        await super().apply(conn, schema, run)

    def key_of(self, event: DomainEvent) -> str | None:
        if isinstance(event, ORDER_EVENTS):
            return event.order_id
        return None

    def evolve(self, row: Row | None, event: DomainEvent, recorded: RecordedEvent) -> Row | None:
        stamp = {
            "position": recorded.position,
            "updated_at": recorded.occurred_at,
            "version": recorded.stream_version,
        }
        if isinstance(event, OrderPlaced):
            return {
                "order_id": event.order_id,
                "customer_id": event.customer_id,
                "status": OrderStatus.PLACED.value,
                "lines": [line.as_json() for line in event.lines],
                "total": event.total,
                "amount_paid": Decimal("0.00"),
                "placed_at": recorded.occurred_at,
                "expires_at": event.expires_at,
                "shipping_address": _to_json(event.shipping_address),
                "email": event.email,
                **stamp,
            }
        if row is None:
            raise ValueError(f"{recorded.type} at {recorded.position} for an unknown order")
        settled = {"expires_at": None, **stamp}  # a deadline shows only while PLACED
        match event:
            case PaymentProcessed():
                return {
                    **row,
                    "status": OrderStatus.PAID.value,
                    "amount_paid": event.amount_paid,
                    **settled,
                }
            case OrderShipped():
                return {**row, "status": OrderStatus.SHIPPED.value, **settled}
            case OrderCancelled():
                return {**row, "status": OrderStatus.CANCELLED.value, **settled}
            case OrderExpired():
                return {**row, "status": OrderStatus.EXPIRED.value, **settled}
            case PaymentRefunded():
                return {**row, "amount_paid": row["amount_paid"] - event.amount, **stamp}
        return row


def _to_json(address: ShippingAddress | None) -> dict[str, Any] | None:
    return None if address is None else encode_state(address)


async def order(pool: asyncpg.Pool, order_id: str) -> OrderView | None:
    row = await pool.fetchrow(
        f"SELECT *, {read_position(NAME)} FROM readmodel.orders WHERE order_id = $1", order_id
    )
    return None if row is None else OrderView.of(row)


async def orders(
    pool: asyncpg.Pool,
    customer_id: str | None,
    status: OrderStatus | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> Page[OrderView]:
    """Newest first; `before` is the (placed_at, order_id) of the last order already seen."""
    clauses: list[str] = []
    args: list[object] = []
    if customer_id is not None:
        args.append(customer_id)
        clauses.append(f"customer_id = ${len(args)}")
    if status is not None:
        args.append(status.value)
        clauses.append(f"status = ${len(args)}")
    if before is not None:
        args.extend(before)
        clauses.append(f"(placed_at, order_id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    # One statement, one snapshot: the page and the position it reflects, even when empty.
    rows = await pool.fetch(
        f"SELECT {read_position(NAME)}, r.* FROM (VALUES (1)) AS one (x) LEFT JOIN ("
        f"SELECT * FROM readmodel.orders {where}"
        f" ORDER BY placed_at DESC, order_id DESC LIMIT ${len(args)}) r ON true"
        " ORDER BY r.placed_at DESC, r.order_id DESC",
        *args,
    )
    position = int(rows[0]["read_position"] or 0)
    rows = [r for r in rows if r["order_id"] is not None]
    return Page([OrderView.of(r) for r in rows[:limit]], len(rows) > limit, position)


BY_ID = LiveTopic("order by id", changed_rows(NAME, "orders", "order_id", OrderView.of))
BY_CUSTOMER = LiveTopic(
    "orders by customer",
    changed_rows(NAME, "orders", "customer_id", OrderView.of),
    slot_key=lambda _customer, view: view.order_id,
)
"""A feed: every change to the watched customers' orders, one slot per order."""
ALL = LiveTopic(
    "every order",
    changed_rows(NAME, "orders", None, OrderView.of),
    slot_key=lambda _key, view: view.order_id,
)
"""A feed of every change to every order (key `EVERY`)."""

READ_MODEL = ReadModel(OrdersProjection(), (BY_ID, BY_CUSTOMER, ALL))
