"""Orders with their lines, for one order by id and for each customer's orders, newest first
(the index on customer, placed_at): table, evolve, typed view, queries and live topics."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import asyncpg

from domain.aggregate import DomainEvent
from domain.order import (
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    OrderStatus,
    PaymentProcessed,
    PaymentRefunded,
)
from eventstore.events import RecordedEvent
from projections.base import Page, Row, RowProjection
from projections.slice import LiveTopic, ReadModel, by_key, read_position

NAME = "orders"
ORDER_EVENTS = (OrderPlaced, PaymentProcessed, OrderShipped, OrderCancelled, PaymentRefunded)


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
    )

    def create_tables(self, schema: str) -> str:
        return super().create_tables(schema) + (
            f"\nCREATE INDEX ON {schema}.orders (customer_id, placed_at DESC, order_id DESC);"
            f"\nCREATE INDEX ON {schema}.orders (placed_at DESC, order_id DESC);"
        )

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
                **stamp,
            }
        if row is None:
            raise ValueError(f"{recorded.type} at {recorded.position} for an unknown order")
        match event:
            case PaymentProcessed():
                return {
                    **row,
                    "status": OrderStatus.PAID.value,
                    "amount_paid": event.amount_paid,
                    **stamp,
                }
            case OrderShipped():
                return {**row, "status": OrderStatus.SHIPPED.value, **stamp}
            case OrderCancelled():
                return {**row, "status": OrderStatus.CANCELLED.value, **stamp}
            case PaymentRefunded():
                return {**row, "amount_paid": row["amount_paid"] - event.amount, **stamp}
        return row


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
    rows = await pool.fetch(
        f"SELECT *, {read_position(NAME)} FROM readmodel.orders {where}"
        f" ORDER BY placed_at DESC, order_id DESC LIMIT ${len(args)}",
        *args,
    )
    return Page([OrderView.of(r) for r in rows[:limit]], len(rows) > limit)


class OrderFeed:
    """Orders that changed since the last read, of the watched customers (or every order, for
    the feed keyed `EVERY_ORDER`). Positions only grow: a change applied later always carries
    a higher position.

    A feed delivers several orders from one read, and its messages must carry strictly
    greater positions. Each view is stamped with the highest position it is known to reflect
    as part of its customer's feed: the last one with the read model's position, each earlier
    one with one before the next change in the same feed (nothing of that customer changed
    in between). So a view stamped P reflects every event up to P, as for any view."""

    def __init__(self, pool: asyncpg.Pool, *, by_customer: bool = True) -> None:
        self._pool = pool
        self._by_customer = by_customer
        self.since = 0

    def start_at(self, position: int) -> None:
        """Where a feed nobody watches yet begins: at the read model's position now."""
        self.since = position

    async def __call__(self, customers: Sequence[Hashable]) -> list[tuple[Hashable, Any]]:
        if self._by_customer:
            rows = await self._pool.fetch(
                f"SELECT *, {read_position(NAME)} FROM readmodel.orders"
                " WHERE customer_id = any($1::text[]) AND position > $2"
                " ORDER BY position LIMIT 1000",
                list(customers),
                self.since,
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT *, {read_position(NAME)} FROM readmodel.orders"
                " WHERE position > $1 ORDER BY position LIMIT 1000",
                self.since,
            )
        if not rows:
            return []
        # A full page ends at its last row's change, not at the read model's position.
        read_at = rows[-1]["read_position"] if len(rows) < 1000 else rows[-1]["position"]
        self.since = max(self.since, rows[-1]["position"])
        next_change: dict[str, int] = {}
        stamped: list[tuple[Hashable, Any]] = []
        for row in reversed(rows):
            customer = row["customer_id"] if self._by_customer else EVERY_ORDER
            stamp = next_change.get(customer, read_at + 1) - 1
            next_change[customer] = row["position"]
            stamped.append((customer, OrderView.of(row, position=stamp)))
        stamped.reverse()
        return stamped


BY_ID = LiveTopic("order by id", by_key(NAME, "orders", "order_id", OrderView.of))
BY_CUSTOMER = LiveTopic(
    "orders by customer", OrderFeed, slot_key=lambda _customer, view: view.order_id
)
EVERY_ORDER = "*"
ALL = LiveTopic(
    "every order",
    lambda pool: OrderFeed(pool, by_customer=False),
    slot_key=lambda _key, view: view.order_id,
)

READ_MODEL = ReadModel(OrdersProjection(), (BY_ID, BY_CUSTOMER, ALL))
