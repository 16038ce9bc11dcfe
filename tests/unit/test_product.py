"""Given events, when a command, then events or an error: the Product decider."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import product
from domain.errors import (
    AlreadyExists,
    DomainError,
    Forbidden,
    InsufficientStock,
    InvalidInput,
    InvalidState,
    NotFound,
)
from domain.product import (
    InventoryUpdated,
    ProductRegistered,
    RegisterProduct,
    ReleaseStock,
    ReserveStock,
    RestockProduct,
    ShipStock,
    StockChange,
)
from domain.values import Actor
from tests.kit import deciders as kit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STAFF = Actor("sam", "staff")
CUSTOMER = Actor("alice", "customer")


def given(*events: product.ProductEvent) -> product.ProductState:
    return kit.given(product.evolve, product.initial_state, *events)


def registered(stock: int = 10) -> ProductRegistered:
    return ProductRegistered("SKU-1", "Widget", Decimal("19.99"), stock, NOW)


def test_register_a_new_product() -> None:
    events = product.decide(
        RegisterProduct("SKU-1", "Widget", Decimal("19.99"), 10, STAFF, NOW), given()
    )
    assert events == [registered()]
    state = given(*events)
    assert state is not None and (state.on_hand, state.reserved, state.available) == (10, 0, 10)


def test_register_a_known_sku_is_already_exists() -> None:
    with pytest.raises(AlreadyExists):
        product.decide(
            RegisterProduct("SKU-1", "Again", Decimal("1"), 0, STAFF, NOW), given(registered())
        )


def test_only_staff_register_and_restock() -> None:
    with pytest.raises(Forbidden):
        product.decide(RegisterProduct("SKU-1", "W", Decimal("1"), 0, CUSTOMER, NOW), given())
    with pytest.raises(Forbidden):
        product.decide(RestockProduct("SKU-1", 1, CUSTOMER, NOW), given(registered()))


@pytest.mark.parametrize(
    ("sku", "name", "price", "stock"),
    [
        ("", "W", "1", 0),
        ("x" * 65, "W", "1", 0),
        ("a b", "W", "1", 0),
        ("SKU", "", "1", 0),
        ("SKU", "\x00", "1", 0),
        ("SKU", "W", "0", 0),
        ("SKU", "W", "-1", 0),
        ("SKU", "W", "1.001", 0),
        ("SKU", "W", "NaN", 0),
        ("SKU", "W", "sNaN", 0),
        ("SKU", "W", "Infinity", 0),
        ("SKU", "W", "1e999999", 0),
        ("SKU", "W", "1", -1),
    ],
)
def test_register_refuses_bad_input(sku: str, name: str, price: str, stock: int) -> None:
    with pytest.raises(InvalidInput):
        product.decide(RegisterProduct(sku, name, price, stock, STAFF, NOW), given())  # type: ignore[arg-type]


def test_prices_are_normalised_to_cents() -> None:
    [event] = product.decide(RegisterProduct("S", "W", "7.5", 0, STAFF, NOW), given())  # type: ignore[arg-type]
    assert isinstance(event, ProductRegistered) and str(event.unit_price) == "7.50"


def test_restock_adds_to_on_hand() -> None:
    events = product.decide(RestockProduct("SKU-1", 5, STAFF, NOW), given(registered()))
    assert events == [InventoryUpdated("SKU-1", StockChange.RESTOCK, 5, 15, 0, None, NOW)]


@pytest.mark.parametrize("quantity", [0, -1, 10_001])
def test_restock_quantity_must_be_positive_and_bounded(quantity: int) -> None:
    with pytest.raises(InvalidInput):
        product.decide(RestockProduct("SKU-1", quantity, STAFF, NOW), given(registered()))


def test_restock_of_an_unknown_sku_is_not_found() -> None:
    with pytest.raises(NotFound):
        product.decide(RestockProduct("SKU-1", 1, STAFF, NOW), given())


def test_reserve_holds_stock_and_refuses_more_than_available() -> None:
    state = given(
        registered(10), InventoryUpdated("SKU-1", StockChange.RESERVATION, 7, 10, 7, "o1", NOW)
    )
    assert product.decide(ReserveStock("SKU-1", "o2", 3, NOW), state) == [
        InventoryUpdated("SKU-1", StockChange.RESERVATION, 3, 10, 10, "o2", NOW)
    ]
    with pytest.raises(InsufficientStock):
        product.decide(ReserveStock("SKU-1", "o2", 4, NOW), state)


def test_release_and_ship_move_reserved_stock() -> None:
    state = given(
        registered(10), InventoryUpdated("SKU-1", StockChange.RESERVATION, 4, 10, 4, "o1", NOW)
    )
    assert product.decide(ReleaseStock("SKU-1", "o1", 4, NOW), state) == [
        InventoryUpdated("SKU-1", StockChange.RELEASE, 4, 10, 0, "o1", NOW)
    ]
    assert product.decide(ShipStock("SKU-1", "o1", 4, NOW), state) == [
        InventoryUpdated("SKU-1", StockChange.SHIPMENT, 4, 6, 0, "o1", NOW)
    ]


def test_every_domain_error_carries_a_contract_code() -> None:
    codes = {cls.code for cls in DomainError.__subclasses__()}
    assert codes <= {
        "BAD_USER_INPUT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "INSUFFICIENT_STOCK",
        "INVALID_STATE",
        "FORBIDDEN",
        "CONFLICT",
    }


# Low stock -------------------------------------------------------------------------------------

SYSTEM = Actor.system("low-stock")
TEN = ProductRegistered("A", "Widget", Decimal("1.00"), 10, NOW)


def move(reason: StockChange, quantity: int, on_hand: int, reserved: int) -> InventoryUpdated:
    return InventoryUpdated("A", reason, quantity, on_hand, reserved, None, NOW)


@pytest.mark.parametrize(
    ("event", "crossed"),
    [
        (move(StockChange.RESERVATION, 6, 10, 6), True),  # 10 -> 4
        (move(StockChange.RESERVATION, 1, 10, 5), False),  # 6 -> 5: not below
        (move(StockChange.RESERVATION, 1, 10, 6), True),  # 5 -> 4
        (move(StockChange.RESERVATION, 1, 10, 7), False),  # 4 -> 3: below already
        (move(StockChange.RELEASE, 1, 10, 6), False),  # up
        (move(StockChange.RESTOCK, 1, 5, 1), False),  # up
        (move(StockChange.SHIPMENT, 2, 3, 0), False),  # available unchanged
    ],
)
def test_a_crossing_below_the_threshold_is_known_from_the_event_alone(
    event: InventoryUpdated, crossed: bool
) -> None:
    assert product.crossed_below(event, 5) is crossed


def test_low_stock_is_flagged_once_per_crossing() -> None:
    low = given(TEN, move(StockChange.RESERVATION, 7, 10, 7))
    flagged = product.decide(product.FlagLowStock("A", 5, SYSTEM, NOW), low)
    assert flagged == [product.LowStockReached("A", 3, 5, NOW)]
    state = given(TEN, move(StockChange.RESERVATION, 7, 10, 7), *flagged)
    assert state is not None and state.low_below == 5
    with pytest.raises(InvalidState, match="already"):  # the same crossing again
        product.decide(product.FlagLowStock("A", 5, SYSTEM, NOW), state)
    back = product.evolve(state, move(StockChange.RESTOCK, 10, 20, 7))  # 13 available
    assert back is not None and back.low_below is None
    again = product.evolve(back, move(StockChange.RESERVATION, 10, 20, 17))  # 3: crossed again
    assert product.decide(product.FlagLowStock("A", 5, SYSTEM, NOW), again) == [
        product.LowStockReached("A", 3, 5, NOW)
    ]


def test_a_product_back_above_the_threshold_is_not_flagged_and_only_the_server_flags() -> None:
    with pytest.raises(InvalidState, match="not below"):
        product.decide(product.FlagLowStock("A", 5, SYSTEM, NOW), given(TEN))
    low = given(TEN, move(StockChange.RESERVATION, 7, 10, 7))
    for actor in (STAFF, CUSTOMER):
        with pytest.raises(Forbidden):
            product.decide(product.FlagLowStock("A", 5, actor, NOW), low)
