"""Given events, then rows: each read model's evolve, pure, without a database (the
projector's batching and idempotency are tested against PostgreSQL in tests/integration)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from domain.ids import OrderId
from domain.order import (
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
)
from domain.product import InventoryUpdated, ProductRegistered, StockChange
from eventstore.events import RecordedEvent
from projections import sales
from projections.kit import fold as fold_tables
from projections.orders import OrdersProjection, OrderView
from projections.products import ProductsProjection, ProductView

NOW = datetime(2026, 11, 26, tzinfo=UTC)
O1 = OrderId(str(uuid.UUID(int=1)))
LINES = (OrderLine("A", 2, Decimal("2.50")), OrderLine("B", 1, Decimal("1.00")))


def at(position: int, version: int = 1) -> RecordedEvent:
    return RecordedEvent(position, uuid.uuid4(), "s", version, "E", 1, {}, {}, NOW)


def fold(projection: Any, *events: Any) -> Any:
    row = None
    for position, event in enumerate(events, start=1):
        row = projection.evolve(row, event, at(position, position))
    return row


def test_a_product_row_follows_registration_and_every_stock_move() -> None:
    row = fold(
        ProductsProjection(),
        ProductRegistered("A", "Widget", Decimal("2.50"), 10, NOW),
        InventoryUpdated("A", StockChange.RESERVATION, 2, 10, 2, O1, NOW),
        InventoryUpdated("A", StockChange.SHIPMENT, 2, 8, 0, O1, NOW),
    )
    view = ProductView.of({**row, "read_position": 7})
    assert (view.on_hand, view.reserved, view.available) == (8, 0, 8)
    assert (view.changed, view.position) == (3, 7)  # last change; the read model's position


def test_stock_for_an_unknown_product_is_refused_not_invented() -> None:
    with pytest.raises(ValueError, match="unknown product"):
        fold(ProductsProjection(), InventoryUpdated("Z", StockChange.RESTOCK, 1, 1, 0, None, NOW))


def test_an_order_row_follows_its_life() -> None:
    placed = OrderPlaced(O1, "ann", LINES, Decimal("6.00"), NOW)
    paid = PaymentProcessed(O1, Decimal("6.00"), Decimal("6.00"), NOW)
    row = fold(OrdersProjection(), placed, paid, OrderShipped(O1, NOW))
    view = OrderView.of({**row, "read_position": 4})
    assert (view.changed, view.position) == (3, 4)
    assert (view.status.value, view.amount_paid, view.version, view.lines) == (
        "SHIPPED",
        Decimal("6.00"),
        3,
        LINES,
    )
    refunded = fold(
        OrdersProjection(),
        placed,
        paid,
        OrderCancelled(O1, "no", "ann", NOW),
        PaymentRefunded(O1, Decimal("6.00"), NOW),
    )
    assert (refunded["status"], refunded["amount_paid"]) == ("CANCELLED", Decimal("0.00"))
    with pytest.raises(ValueError, match="unknown order"):
        fold(OrdersProjection(), paid)


def test_the_dashboard_counts_each_step_once_and_units_of_orders_not_cancelled() -> None:
    tables = fold_tables(
        sales.SalesProjection(),
        [
            (OrderPlaced(O1, "ann", LINES, Decimal("6.00"), NOW), 1),
            (PaymentProcessed(O1, Decimal("6.00"), Decimal("6.00"), NOW), 2),
            (OrderCancelled(O1, "no", "ann", NOW), 3),
            (PaymentRefunded(O1, Decimal("6.00"), NOW), 4),
        ],
    )
    assert tables["sales_totals"][1] == sales.Totals(1, 1, 1, 0, 1, Decimal(0), 4, 0)
    assert list(tables["sales_orders"]) == [O1]
    assert {sku: row.units_sold for sku, row in tables["sales_products"].items()} == {
        "A": 0,
        "B": 0,
    }
    with pytest.raises(ValueError, match="unknown order"):
        fold_tables(sales.SalesProjection(), [(OrderCancelled(OrderId("x"), "no", "ann", NOW), 5)])
