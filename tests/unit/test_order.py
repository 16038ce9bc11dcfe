"""Given events, when a command, then events or an error: the Order decider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain import order
from domain.errors import Forbidden, InvalidInput, InvalidState, NotFound
from domain.order import (
    CancelOrder,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    OrderStatus,
    PaymentProcessed,
    PaymentRefunded,
    PayOrder,
    PlaceOrder,
    ShipOrder,
)
from domain.values import Actor
from tests.kit import deciders as kit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
ALICE = Actor("alice", "customer")
BOB = Actor("bob", "customer")
STAFF = Actor("sam", "staff")
LINES = (OrderLine("A", 2, Decimal("2.50")), OrderLine("B", 1, Decimal("10.00")))


def given(*events: order.OrderEvent) -> order.OrderState:
    return kit.given(order.evolve, order.initial_state, *events)


PLACED = OrderPlaced("o1", "alice", LINES, Decimal("15.00"), NOW)
PAID = PaymentProcessed("o1", Decimal("15.00"), Decimal("15.00"), NOW)


def test_place_an_order_totals_its_lines() -> None:
    assert order.decide(PlaceOrder("o1", LINES, ALICE, NOW), given()) == [PLACED]
    state = given(PLACED)
    assert state is not None and state.status is OrderStatus.PLACED and state.version == 1


@pytest.mark.parametrize(
    "lines",
    [
        (),
        (OrderLine("A", 0, Decimal("1")),),
        (OrderLine("A", -1, Decimal("1")),),
        (OrderLine("A", 10_001, Decimal("1")),),
        (OrderLine("A", 1, Decimal("1")), OrderLine("A", 1, Decimal("1"))),
        (OrderLine("bad sku", 1, Decimal("1")),),
        tuple(OrderLine(f"S{i}", 1, Decimal("1")) for i in range(101)),
    ],
)
def test_place_refuses_bad_lines(lines: tuple[OrderLine, ...]) -> None:
    with pytest.raises(InvalidInput):
        order.decide(PlaceOrder("o1", lines, ALICE, NOW), given())


def test_pay_the_amount_due() -> None:
    assert order.decide(PayOrder("o1", Decimal("15.00"), ALICE, NOW), given(PLACED)) == [PAID]
    state = given(PLACED, PAID)
    assert state is not None and state.status is OrderStatus.PAID and state.amount_paid == 15


@pytest.mark.parametrize("amount", ["14.99", "15.01", "0", "-15", "15.001", "NaN"])
def test_pay_refuses_any_other_amount(amount: str) -> None:
    with pytest.raises(InvalidInput):
        order.decide(PayOrder("o1", Decimal(amount), ALICE, NOW), given(PLACED))


def test_pay_twice_is_invalid_state() -> None:
    with pytest.raises(InvalidState):
        order.decide(PayOrder("o1", Decimal("15.00"), ALICE, NOW), given(PLACED, PAID))


def test_another_customer_cannot_pay_or_cancel_but_staff_can() -> None:
    with pytest.raises(Forbidden):
        order.decide(PayOrder("o1", Decimal("15.00"), BOB, NOW), given(PLACED))
    with pytest.raises(Forbidden):
        order.decide(CancelOrder("o1", "no", BOB, NOW), given(PLACED))
    assert order.decide(PayOrder("o1", Decimal("15.00"), STAFF, NOW), given(PLACED)) == [PAID]


def test_unknown_order_is_not_found() -> None:
    with pytest.raises(NotFound):
        order.decide(PayOrder("o1", Decimal("1"), ALICE, NOW), given())
    with pytest.raises(NotFound):
        order.decide(ShipOrder("o1", STAFF, NOW), given())


def test_ship_only_paid_orders_and_only_staff() -> None:
    with pytest.raises(InvalidState):
        order.decide(ShipOrder("o1", STAFF, NOW), given(PLACED))
    with pytest.raises(Forbidden):
        order.decide(ShipOrder("o1", ALICE, NOW), given(PLACED, PAID))
    assert order.decide(ShipOrder("o1", STAFF, LATER), given(PLACED, PAID)) == [
        OrderShipped("o1", LATER)
    ]
    with pytest.raises(InvalidState):
        order.decide(ShipOrder("o1", STAFF, LATER), given(PLACED, PAID, OrderShipped("o1", LATER)))


def test_cancel_a_placed_order_refunds_nothing() -> None:
    assert order.decide(CancelOrder("o1", "changed mind", ALICE, LATER), given(PLACED)) == [
        OrderCancelled("o1", "changed mind", "alice", LATER)
    ]


def test_cancel_a_paid_order_refunds_what_was_paid() -> None:
    events = order.decide(CancelOrder("o1", "late", STAFF, LATER), given(PLACED, PAID))
    assert events == [
        OrderCancelled("o1", "late", "sam", LATER),
        PaymentRefunded("o1", Decimal("15.00"), LATER),
    ]
    state = given(PLACED, PAID, *events)
    assert state is not None and state.status is OrderStatus.CANCELLED
    assert state.amount_paid == 0 and state.version == 4 and state.updated_at == LATER


@pytest.mark.parametrize("reason", ["", "   ", "r" * 501])
def test_cancel_needs_a_reason(reason: str) -> None:
    with pytest.raises(InvalidInput):
        order.decide(CancelOrder("o1", reason, ALICE, NOW), given(PLACED))


def test_shipped_or_cancelled_orders_cannot_be_cancelled_or_paid() -> None:
    shipped = given(PLACED, PAID, OrderShipped("o1", LATER))
    cancelled = given(PLACED, OrderCancelled("o1", "x", "alice", LATER))
    for state in (shipped, cancelled):
        with pytest.raises(InvalidState):
            order.decide(CancelOrder("o1", "again", STAFF, LATER), state)
    with pytest.raises(InvalidState):
        order.decide(PayOrder("o1", Decimal("15.00"), ALICE, LATER), cancelled)
    with pytest.raises(InvalidState):
        order.decide(ShipOrder("o1", STAFF, LATER), cancelled)


# Deadlines -----------------------------------------------------------------------------------

WINDOW = timedelta(minutes=30)
DUE = NOW + WINDOW
SYSTEM = Actor.system("order-expiry")
PLACED_WITH_DEADLINE = OrderPlaced("o1", "alice", LINES, Decimal("15.00"), NOW, DUE)


def test_an_order_placed_with_a_window_carries_its_deadline() -> None:
    decided = order.decide(PlaceOrder("o1", LINES, ALICE, NOW, WINDOW), given())
    assert decided == [PLACED_WITH_DEADLINE]
    state = given(PLACED_WITH_DEADLINE)
    assert state is not None and state.expires_at == DUE


def test_an_unpaid_order_expires_once_its_deadline_has_passed() -> None:
    decided = order.decide(order.ExpireOrder("o1", SYSTEM, DUE), given(PLACED_WITH_DEADLINE))
    assert decided == [order.OrderExpired("o1", DUE, DUE)]
    state = given(PLACED_WITH_DEADLINE, *decided)
    assert state is not None and state.status is OrderStatus.EXPIRED
    assert state.expires_at is None and state.version == 2


@pytest.mark.parametrize(
    ("history", "at"),
    [
        ((PLACED_WITH_DEADLINE,), DUE - timedelta(microseconds=1)),  # not yet due
        ((PLACED,), DUE + timedelta(days=1)),  # placed without a deadline
        ((PLACED_WITH_DEADLINE, PAID), DUE),  # paid in time
        ((PLACED_WITH_DEADLINE, OrderCancelled("o1", "no", "alice", NOW)), DUE),
        ((PLACED_WITH_DEADLINE, order.OrderExpired("o1", DUE, DUE)), DUE),  # expired already
    ],
)
def test_an_order_that_is_not_due_or_not_placed_does_not_expire(
    history: tuple[order.OrderEvent, ...], at: datetime
) -> None:
    with pytest.raises(InvalidState):
        order.decide(order.ExpireOrder("o1", SYSTEM, at), given(*history))


@pytest.mark.parametrize("actor", [ALICE, STAFF])
def test_only_the_server_expires_an_order(actor: Actor) -> None:
    with pytest.raises(Forbidden):
        order.decide(order.ExpireOrder("o1", actor, DUE), given(PLACED_WITH_DEADLINE))


def test_a_payment_at_or_after_the_deadline_is_refused_and_before_it_accepted() -> None:
    state = given(PLACED_WITH_DEADLINE)
    with pytest.raises(InvalidState, match="deadline"):
        order.decide(PayOrder("o1", Decimal("15.00"), ALICE, DUE), state)
    just_before = DUE - timedelta(microseconds=1)
    decided = order.decide(PayOrder("o1", Decimal("15.00"), ALICE, just_before), state)
    assert decided == [PaymentProcessed("o1", Decimal("15.00"), Decimal("15.00"), just_before)]
    paid = given(PLACED_WITH_DEADLINE, *decided)
    assert paid is not None and paid.expires_at is None  # a deadline shows only while PLACED


def test_an_expired_order_cannot_be_paid_cancelled_or_shipped() -> None:
    state = given(PLACED_WITH_DEADLINE, order.OrderExpired("o1", DUE, DUE))
    for command in (
        PayOrder("o1", Decimal("15.00"), ALICE, LATER),
        CancelOrder("o1", "why", ALICE, LATER),
        ShipOrder("o1", STAFF, LATER),
    ):
        with pytest.raises(InvalidState):
            order.decide(command, state)
