"""Given the states of an order and its products, when checkout, shipping or cancelling, then
the events of every stream at once: the rules that span aggregates (domain/shop.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain import integrity, order, product
from domain import shop as rules
from domain.errors import Forbidden, InsufficientStock, InvalidState, NotFound
from domain.ids import OrderId
from domain.product import InventoryUpdated, ProductRegistered, StockChange
from domain.values import Actor

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ANN = Actor("ann", "customer")
BOB = Actor("bob", "customer")
STAFF = Actor("sam", "staff")
O1 = OrderId("3f2b6c1e-9d4a-4c1b-8f3e-2a7d5e9c0b14")


def catalogue(**stock: int) -> dict[str, product.ProductState]:
    """Products A, B, ... registered at 2.50 each with the given stock."""
    return {
        sku: product.evolve(None, ProductRegistered(sku, sku, Decimal("2.50"), units, NOW))
        for sku, units in stock.items()
    }


def after(decision: rules.Decision, states: dict[str, object]) -> dict[str, object]:
    """Each stream's state once `decision` is applied (streams by id)."""
    result = dict(states)
    for stream, events in decision.items():
        evolve = order.evolve if stream.startswith(order.STREAM_PREFIX) else product.evolve
        for event in events:
            result[stream] = evolve(result.get(stream), event)  # type: ignore[arg-type]
    return result


def test_checkout_prices_each_line_from_the_catalogue_and_reserves_its_stock() -> None:
    decision = rules.checkout(O1, (("A", 2), ("B", 1)), catalogue(A=5, B=1), ANN, NOW)
    [placed] = decision[order.stream_id(O1)]
    assert placed == order.OrderPlaced(
        O1,
        "ann",
        (order.OrderLine("A", 2, Decimal("2.50")), order.OrderLine("B", 1, Decimal("2.50"))),
        Decimal("7.50"),
        NOW,
    )
    assert decision["product-A"] == [
        InventoryUpdated("A", StockChange.RESERVATION, 2, 5, 2, O1, NOW)
    ]
    assert decision["product-B"] == [
        InventoryUpdated("B", StockChange.RESERVATION, 1, 1, 1, O1, NOW)
    ]
    integrity.check(decision, {s: True for s in decision})  # every reference is established


@pytest.mark.parametrize(
    ("requested", "stock", "error"),
    [
        ((("A", 6),), {"A": 5}, InsufficientStock),
        ((("A", 1), ("B", 2)), {"A": 5, "B": 1}, InsufficientStock),
        ((("A", 1), ("Z", 1)), {"A": 5}, NotFound),
    ],
)
def test_checkout_refuses_the_whole_order_when_one_line_cannot_be_had(
    requested: tuple[tuple[str, int], ...], stock: dict[str, int], error: type[Exception]
) -> None:
    with pytest.raises(error):
        rules.checkout(O1, requested, catalogue(**stock), ANN, NOW)


def placed_and_paid(pay: bool) -> tuple[order.OrderState, dict[str, product.ProductState]]:
    decision = rules.checkout(O1, (("A", 2),), catalogue(A=5), ANN, NOW)
    states = after(decision, {"product-A": catalogue(A=5)["A"]})
    state = states[order.stream_id(O1)]
    if pay:
        paid = order.decide(order.PayOrder(O1, Decimal("5.00"), ANN, NOW), state)  # type: ignore[arg-type]
        for event in paid:
            state = order.evolve(state, event)  # type: ignore[arg-type]
    return state, {"A": states["product-A"]}  # type: ignore[return-value, dict-item]


def test_shipping_takes_the_reserved_units_off_the_shelf() -> None:
    state, stock = placed_and_paid(pay=True)
    decision = rules.ship(state, stock, STAFF, NOW)
    assert decision[order.stream_id(O1)] == [order.OrderShipped(O1, NOW)]
    assert decision["product-A"] == [InventoryUpdated("A", StockChange.SHIPMENT, 2, 3, 0, O1, NOW)]


def test_an_unpaid_order_does_not_ship_and_nothing_moves() -> None:
    state, stock = placed_and_paid(pay=False)
    with pytest.raises(InvalidState):
        rules.ship(state, stock, STAFF, NOW)


def test_cancelling_a_paid_order_releases_its_stock_and_refunds() -> None:
    state, stock = placed_and_paid(pay=True)
    decision = rules.cancel(state, stock, "changed my mind", ANN, NOW)
    assert decision[order.stream_id(O1)] == [
        order.OrderCancelled(O1, "changed my mind", "ann", NOW),
        order.PaymentRefunded(O1, Decimal("5.00"), NOW),
    ]
    assert decision["product-A"] == [InventoryUpdated("A", StockChange.RELEASE, 2, 5, 0, O1, NOW)]


def test_another_customer_cannot_cancel_and_a_missing_order_is_not_found() -> None:
    state, stock = placed_and_paid(pay=False)
    with pytest.raises(Forbidden):
        rules.cancel(state, stock, "mine now", BOB, NOW)
    with pytest.raises(NotFound):
        rules.cancel(None, stock, "no", STAFF, NOW)


def test_an_order_past_its_deadline_expires_and_releases_its_stock_in_the_same_decision() -> None:
    window = timedelta(minutes=30)
    decision = rules.checkout(O1, (("A", 2),), catalogue(A=5), ANN, NOW, window)
    states = after(decision, {"product-A": catalogue(A=5)["A"]})
    placed, stock = states[order.stream_id(O1)], {"A": states["product-A"]}
    system = Actor.system("order-expiry")
    expired = rules.expire(placed, stock, system, NOW + window)  # type: ignore[arg-type]
    assert expired == {
        order.stream_id(O1): [order.OrderExpired(O1, NOW + window, NOW + window)],
        "product-A": [InventoryUpdated("A", StockChange.RELEASE, 2, 5, 0, O1, NOW + window)],
    }
    with pytest.raises(InvalidState):  # a minute early: nothing moves
        rules.expire(placed, stock, system, NOW + window - timedelta(minutes=1))  # type: ignore[arg-type]
    with pytest.raises(Forbidden):  # not the server
        rules.expire(placed, stock, STAFF, NOW + window)  # type: ignore[arg-type]
