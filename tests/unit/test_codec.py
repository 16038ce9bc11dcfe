"""Domain events to the log's JSON and back, and the upcasters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.codec import EVENT_TYPES, DomainEvent, decode, encode
from domain.contact import ShippingAddress
from domain.customer import CustomerForgotten
from domain.order import (
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
)
from domain.product import InventoryUpdated, LowStockReached, ProductRegistered, StockChange
from domain.review import ReviewPosted
from domain.upcasters import upcast_order_placed_v1_v2
from domain.wishlist import WishlistItemAdded, WishlistItemRemoved

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EVENTS: list[DomainEvent] = [
    ProductRegistered("A", "Widget", Decimal("19.99"), 3, NOW),
    InventoryUpdated("A", StockChange.RESERVATION, 2, 3, 2, "o1", NOW),
    InventoryUpdated("A", StockChange.RESTOCK, 2, 5, 2, None, NOW),
    OrderPlaced("o1", "c1", (OrderLine("A", 2, Decimal("1.50")),), Decimal("3.00"), NOW),
    PaymentProcessed("o1", Decimal("3.00"), Decimal("3.00"), NOW),
    OrderShipped("o1", NOW),
    OrderCancelled("o1", "why", "c1", NOW),
    PaymentRefunded("o1", Decimal("3.00"), NOW),
    ReviewPosted("r1", "A", "c1", 5, "fine", NOW),
    OrderExpired("o1", NOW, NOW),
    LowStockReached("A", 2, 5, NOW),
    OrderPlaced("o2", "c1", (OrderLine("A", 1, Decimal("1.50")),), Decimal("1.50"), NOW, NOW),
    WishlistItemAdded("w1", "c1", "A", NOW),
    WishlistItemRemoved("w1", "c1", "A", NOW),
    CustomerForgotten("c1", "c1", NOW),
    OrderPlaced(
        "o3",
        "c1",
        (OrderLine("A", 1, Decimal("1.50")),),
        Decimal("1.50"),
        NOW,
        None,
        ShippingAddress("Ada", "1 Road", None, "London", "N1 9GU", "GB"),
        "ada@example.com",
    ),
]


def test_every_event_type_is_covered() -> None:
    assert {type(e).__name__ for e in EVENTS} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_events_round_trip_through_json(event: DomainEvent) -> None:
    import json

    event_type, version, data = encode(event)
    assert event_type.endswith(("ed", "en"))  # past tense: Placed, Forgotten
    assert version == event.schema_version
    assert decode(event_type, json.loads(json.dumps(data)), NOW) == event


def test_money_is_stored_as_exact_strings() -> None:
    _, _, data = encode(EVENTS[3])
    assert data == {
        "orderId": "o1",
        "customerId": "c1",
        "total": "3.00",
        "lines": [{"sku": "A", "quantity": 2, "unitPrice": "1.50"}],
        "expiresAt": None,
        "shippingAddress": None,
        "email": None,
    }


def test_order_placed_v1_gains_its_total() -> None:
    v1 = {
        "orderId": "o1",
        "customerId": "c1",
        "lines": [
            {"sku": "A", "quantity": 3, "unitPrice": "1.10"},
            {"sku": "B", "quantity": 1, "unitPrice": "0.70"},
        ],
    }
    assert upcast_order_placed_v1_v2(v1) == {**v1, "total": "4.00"}


def test_aggregate_states_round_trip_for_snapshots() -> None:
    from domain import order, product
    from domain.codec import decode_state, encode_state

    states = [
        (product.Product, product.Product("A", "Widget", Decimal("1.50"), 7, 2)),
        (
            order.Order,
            order.Order(
                "o1",
                "c1",
                order.OrderStatus.PAID,
                (OrderLine("A", 2, Decimal("1.50")),),
                Decimal("3.00"),
                Decimal("3.00"),
                NOW,
                NOW,
                2,
            ),
        ),
    ]
    import json

    for cls, state in states:
        assert decode_state(cls, json.loads(json.dumps(encode_state(state)))) == state


def test_a_sealed_field_its_reader_cannot_open_reads_as_erased() -> None:
    _, _, data = encode(EVENTS[-1])
    sealed = {"$personal": 1, "subject": "c1", "key": "k", "sealed": "x"}
    decoded = decode("OrderPlaced", {**data, "shippingAddress": sealed, "email": sealed}, NOW)
    assert isinstance(decoded, OrderPlaced)
    assert decoded.shipping_address is None and decoded.email is None
    assert decoded.customer_id == "c1" and decoded.total == Decimal("1.50")
