"""The shop's reactions as pure rules (given an event, then the effects on the timers) and
the kit's values: the idempotency key a timer's command carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from application.commands import Policy
from application.expiry import OrderExpiry
from application.low_stock import LowStock
from application.orders import ExpireOrder
from application.reactions import Cancel, Schedule, Timer, retry_delay
from application.shop import reactions
from domain.aggregate import DomainEvent
from domain.codec import encode
from domain.order import (
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
)
from domain.product import InventoryUpdated, StockChange
from eventstore.events import RecordedEvent

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DUE = NOW + timedelta(minutes=30)
LINES = (OrderLine("A", 1, Decimal("1.00")),)


def recorded(event: DomainEvent, position: int = 7) -> RecordedEvent:
    import uuid

    event_type, version, data = encode(event)
    return RecordedEvent(
        position, uuid.uuid4(), "s-1", 1, event_type, version, data, {}, event.occurred_at
    )


@pytest.mark.parametrize(
    ("event", "effects"),
    [
        (
            OrderPlaced("o1", "c", LINES, Decimal("1.00"), NOW, DUE),
            (Schedule("o1", DUE, {"orderId": "o1", "skus": [line.sku for line in LINES]}),),
        ),
        (OrderPlaced("o1", "c", LINES, Decimal("1.00"), NOW), ()),  # no deadline
        (PaymentProcessed("o1", Decimal("1.00"), Decimal("1.00"), NOW), (Cancel("o1"),)),
        (OrderCancelled("o1", "why", "c", NOW), (Cancel("o1"),)),
        (OrderExpired("o1", DUE, DUE), (Cancel("o1"),)),
        (OrderShipped("o1", NOW), ()),
    ],
)
def test_order_expiry_schedules_at_the_deadline_and_cancels_once_settled(
    event: DomainEvent, effects: tuple[object, ...]
) -> None:
    assert tuple(OrderExpiry().react(event, recorded(event))) == effects


def test_low_stock_schedules_a_timer_due_now_only_on_a_downward_crossing() -> None:
    crossing = InventoryUpdated("A", StockChange.RESERVATION, 3, 10, 7, None, NOW)
    below = InventoryUpdated("A", StockChange.RESERVATION, 1, 10, 8, None, NOW)
    assert LowStock(5).react(crossing, recorded(crossing)) == (
        Schedule("A", NOW, {"sku": "A", "threshold": 5}),
    )
    assert LowStock(5).react(below, recorded(below)) == ()


def test_a_timers_command_carries_a_key_of_that_timer_alone() -> None:
    timer = Timer("order-expiry", "o1", DUE, {"orderId": "o1"}, 42)
    command = OrderExpiry().command(timer)
    assert command == ExpireOrder(command.actor, "o1", timer.idempotency_key)  # type: ignore[arg-type]
    hinted = Timer("order-expiry", "o1", DUE, {"orderId": "o1", "skus": ["A", "B"]}, 42)
    assert OrderExpiry().command(hinted).skus == ("A", "B")  # the order need not be read
    assert command.actor.role == "system" and command.actor.id == "system:order-expiry"
    assert timer.idempotency_key == Timer("order-expiry", "o1", NOW, {}, 42).idempotency_key
    moved = Timer("order-expiry", "o1", DUE, {"orderId": "o1"}, 43)  # rescheduled later
    other = Timer("low-stock", "o1", DUE, {}, 42)
    keys = {timer.idempotency_key, moved.idempotency_key, other.idempotency_key}
    assert len(keys) == 3
    assert all(k.isascii() and len(k) <= 200 for k in keys)  # a valid client key's shape


def test_retries_back_off_to_at_most_five_minutes() -> None:
    assert [retry_delay(n).total_seconds() for n in (0, 1, 2, 8, 9, 30)] == [
        1, 2, 4, 256, 300, 300
    ]  # fmt: skip


def test_the_shop_registers_both_reactions_and_a_zero_threshold_turns_low_stock_off() -> None:
    assert [r.name for r in reactions(Policy())] == ["order-expiry", "low-stock"]
    assert [r.name for r in reactions(Policy(low_stock_threshold=0))] == ["order-expiry"]
