"""Orders with their lines, for one order by id and for each customer's orders, newest
first (the index on customer, placed_at)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from domain.codec import DomainEvent
from domain.order import (
    OrderCancelled,
    OrderPlaced,
    OrderShipped,
    OrderStatus,
    PaymentProcessed,
    PaymentRefunded,
)
from eventstore.events import RecordedEvent
from projections.base import Row, RowProjection

ORDER_EVENTS = (OrderPlaced, PaymentProcessed, OrderShipped, OrderCancelled, PaymentRefunded)


class OrdersProjection(RowProjection):
    name: ClassVar[str] = "orders"
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
