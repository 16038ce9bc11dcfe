"""The Order aggregate: PLACED -> PAID -> SHIPPED, and PLACED | PAID -> CANCELLED. Long on
purpose: an aggregate is one module (events, commands, state, evolve, decide), as
STYLE.md asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, assert_never

from domain import values
from domain.aggregate import AggregateType
from domain.errors import InvalidInput, InvalidState, NotFound
from domain.ids import OrderId
from domain.values import Actor

STREAM_PREFIX = "order-"


def stream_id(order_id: OrderId) -> str:
    return f"{STREAM_PREFIX}{order_id}"


class OrderStatus(StrEnum):
    PLACED = "PLACED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity

    def as_json(self) -> dict[str, object]:
        """As events and read models store it."""
        return {"sku": self.sku, "quantity": self.quantity, "unitPrice": str(self.unit_price)}


# Events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """v2 added `total`; v1 events are upcast by `domain.upcasters`."""

    schema_version: ClassVar[int] = 2
    order_id: OrderId
    customer_id: str
    lines: tuple[OrderLine, ...]
    total: Decimal
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentProcessed:
    """v2: `orderId` is canonical (see `domain.ids`); v1 may hold any spelling of it."""

    schema_version: ClassVar[int] = 2
    order_id: OrderId
    amount: Decimal
    amount_paid: Decimal
    """The order's amount paid after this payment."""
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderShipped:
    """v2: `orderId` is canonical (see `domain.ids`); v1 may hold any spelling of it."""

    schema_version: ClassVar[int] = 2
    order_id: OrderId
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """v2: `orderId` is canonical (see `domain.ids`); v1 may hold any spelling of it."""

    schema_version: ClassVar[int] = 2
    order_id: OrderId
    reason: str
    cancelled_by: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PaymentRefunded:
    """v2: `orderId` is canonical (see `domain.ids`); v1 may hold any spelling of it."""

    schema_version: ClassVar[int] = 2
    order_id: OrderId
    amount: Decimal
    occurred_at: datetime


OrderEvent = OrderPlaced | PaymentProcessed | OrderShipped | OrderCancelled | PaymentRefunded

# Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """`lines` are priced from the catalogue by the caller, at placing time."""

    order_id: OrderId
    lines: tuple[OrderLine, ...]
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class PayOrder:
    order_id: OrderId
    amount: Decimal
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class ShipOrder:
    order_id: OrderId
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: OrderId
    reason: str
    actor: Actor
    at: datetime


OrderCommand = PlaceOrder | PayOrder | ShipOrder | CancelOrder

# State -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    order_id: OrderId
    customer_id: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    total: Decimal
    amount_paid: Decimal
    placed_at: datetime
    updated_at: datetime
    version: int


OrderState = Order | None
initial_state: OrderState = None


def evolve(state: OrderState, event: OrderEvent) -> OrderState:
    match event:
        case OrderPlaced():
            return Order(
                event.order_id,
                event.customer_id,
                OrderStatus.PLACED,
                event.lines,
                event.total,
                Decimal("0.00"),
                event.occurred_at,
                event.occurred_at,
                1,
            )
        case PaymentProcessed():
            assert state is not None
            return _next(
                state, event.occurred_at, status=OrderStatus.PAID, amount_paid=event.amount_paid
            )
        case OrderShipped():
            assert state is not None
            return _next(state, event.occurred_at, status=OrderStatus.SHIPPED)
        case OrderCancelled():
            assert state is not None
            return _next(state, event.occurred_at, status=OrderStatus.CANCELLED)
        case PaymentRefunded():
            assert state is not None
            return _next(state, event.occurred_at, amount_paid=state.amount_paid - event.amount)
        case _:
            assert_never(event)


def _next(
    state: Order,
    at: datetime,
    *,
    status: OrderStatus | None = None,
    amount_paid: Decimal | None = None,
) -> Order:
    return Order(
        state.order_id,
        state.customer_id,
        status or state.status,
        state.lines,
        state.total,
        state.amount_paid if amount_paid is None else amount_paid,
        state.placed_at,
        at,
        state.version + 1,
    )


def validate_lines(lines: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """Order lines as a client sends them: 1 to 100, skus valid and never twice."""
    if not 1 <= len(lines) <= values.MAX_LINES:
        raise InvalidInput(f"an order has 1 to {values.MAX_LINES} lines")
    seen: set[str] = set()
    for sku, quantity in lines:
        values.sku(sku)
        values.quantity(quantity)
        if sku in seen:
            raise InvalidInput(f"sku {sku!r} appears in more than one line")
        seen.add(sku)
    return lines


def _existing(state: OrderState, order_id: OrderId, actor: Actor) -> Order:
    if state is None:
        raise NotFound(f"no order {order_id!r}")
    if state.order_id != order_id:
        raise InvalidInput(f"order {order_id!r} was loaded as {state.order_id!r}")
    actor.require_access(state.customer_id)
    return state


def decide(command: OrderCommand, state: OrderState) -> list[OrderEvent]:
    match command:
        case PlaceOrder():
            validate_lines(tuple((line.sku, line.quantity) for line in command.lines))
            if state is not None:
                raise InvalidState(f"order {command.order_id!r} already exists")
            total = sum((line.line_total for line in command.lines), Decimal("0.00"))
            return [
                OrderPlaced(command.order_id, command.actor.id, command.lines, total, command.at)
            ]
        case PayOrder():
            order = _existing(state, command.order_id, command.actor)
            amount = values.money(command.amount)
            if order.status is not OrderStatus.PLACED:
                raise InvalidState(f"an order that is {order.status} cannot be paid")
            due = order.total - order.amount_paid
            if amount != due:
                raise InvalidInput(f"amount must equal the amount due, {due}")
            return [
                PaymentProcessed(order.order_id, amount, order.amount_paid + amount, command.at)
            ]
        case ShipOrder():
            command.actor.require_staff()
            order = _existing(state, command.order_id, command.actor)
            if order.status is not OrderStatus.PAID:
                raise InvalidState(f"an order that is {order.status} cannot be shipped")
            return [OrderShipped(order.order_id, command.at)]
        case CancelOrder():
            order = _existing(state, command.order_id, command.actor)
            reason = values.text(command.reason, field="reason", maximum=values.MAX_REASON)
            if order.status not in (OrderStatus.PLACED, OrderStatus.PAID):
                raise InvalidState(f"an order that is {order.status} cannot be cancelled")
            events: list[OrderEvent] = [
                OrderCancelled(order.order_id, reason, command.actor.id, command.at)
            ]
            if order.amount_paid > 0:
                events.append(PaymentRefunded(order.order_id, order.amount_paid, command.at))
            return events
        case _:
            assert_never(command)


def _references(event: OrderEvent) -> tuple[str, ...]:
    """Placing an order refers to the products it reserves."""
    if isinstance(event, OrderPlaced):
        return tuple(f"product-{line.sku}" for line in event.lines)
    return ()


AGGREGATE = AggregateType(
    prefix=STREAM_PREFIX,
    events=(OrderPlaced, PaymentProcessed, OrderShipped, OrderCancelled, PaymentRefunded),
    evolve=evolve,
    initial=initial_state,
    state_type=Order,
    subject=lambda event: stream_id(event.order_id),
    references=_references,
)
