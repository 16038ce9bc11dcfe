"""The Order aggregate: PLACED -> PAID -> SHIPPED, PLACED | PAID -> CANCELLED, and PLACED ->
EXPIRED once its payment deadline has passed (the server's order-expiry reaction asks). Long on
purpose: an aggregate is one module (events, commands, state, evolve, decide), as
STYLE.md asks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, assert_never

from domain import product, values
from domain.aggregate import AggregateType
from domain.contact import ShippingAddress
from domain.errors import InvalidInput, InvalidState, NotFound, NotYet
from domain.ids import OrderId
from domain.ids import order_id as parse_order_id
from domain.values import Actor

STREAM_PREFIX = "order-"


def stream_id(order_id: OrderId) -> str:
    return f"{STREAM_PREFIX}{order_id}"


class OrderStatus(StrEnum):
    PLACED = "PLACED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


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
    """v2 added `total`, v3 `expiresAt`; older events are upcast by `domain.upcasters`."""

    schema_version: ClassVar[int] = 3
    order_id: OrderId
    customer_id: str
    lines: tuple[OrderLine, ...]
    total: Decimal
    occurred_at: datetime
    expires_at: datetime | None = None
    """The payment deadline, decided when the order was placed: unpaid by then, the order
    expires. None: it never does (placed with deadlines off, or before they existed)."""
    shipping_address: ShippingAddress | None = None
    """Personal data (as `email`): sealed in the log under the customer's own key, None once
    the customer is forgotten (and wherever an order is decided: see `personal`)."""
    email: str | None = None

    subject: ClassVar[str] = "customer_id"
    """Whose personal data this event carries (a field of it)."""
    personal: ClassVar[tuple[str, ...]] = ("shipping_address", "email")
    """Its fields that are personal data: the log holds them encrypted with a key of the
    subject's own, destroyed when the subject is forgotten (eventstore/personal.py)."""


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


@dataclass(frozen=True, slots=True)
class OrderExpired:
    """Not paid by its deadline: its reserved stock is released with it, as for a cancel."""

    schema_version: ClassVar[int] = 1
    order_id: OrderId
    expires_at: datetime
    """The deadline that passed."""
    occurred_at: datetime


OrderEvent = (
    OrderPlaced | PaymentProcessed | OrderShipped | OrderCancelled | PaymentRefunded | OrderExpired
)

# Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """`lines` are priced from the catalogue by the caller, at placing time; `payment_window`
    (None: no deadline) is the shop's policy at that time."""

    order_id: OrderId
    lines: tuple[OrderLine, ...]
    actor: Actor
    at: datetime
    payment_window: timedelta | None = None
    shipping_address: ShippingAddress | None = None
    """Validated by the caller (`domain.contact`), as `email`."""
    email: str | None = None


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


@dataclass(frozen=True, slots=True)
class ExpireOrder:
    """Asked by the server itself (a `system` actor) when the deadline has passed."""

    order_id: OrderId
    actor: Actor
    at: datetime


OrderCommand = PlaceOrder | PayOrder | ShipOrder | CancelOrder | ExpireOrder

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
    expires_at: datetime | None = None
    """While PLACED: the payment deadline, if it has one."""


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
                event.expires_at,
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
        case OrderExpired():
            assert state is not None
            return _next(state, event.occurred_at, status=OrderStatus.EXPIRED)
        case _:
            assert_never(event)


def _next(
    state: Order,
    at: datetime,
    *,
    status: OrderStatus | None = None,
    amount_paid: Decimal | None = None,
) -> Order:
    status = status or state.status
    return Order(
        state.order_id,
        state.customer_id,
        status,
        state.lines,
        state.total,
        state.amount_paid if amount_paid is None else amount_paid,
        state.placed_at,
        at,
        state.version + 1,
        state.expires_at if status is OrderStatus.PLACED else None,
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
            window = command.payment_window
            expires_at = command.at + window if window else None
            return [
                OrderPlaced(
                    command.order_id,
                    command.actor.id,
                    command.lines,
                    total,
                    command.at,
                    expires_at,
                    command.shipping_address,
                    command.email,
                )
            ]
        case PayOrder():
            order = _existing(state, command.order_id, command.actor)
            amount = values.money(command.amount)
            if order.status is not OrderStatus.PLACED:
                raise InvalidState(f"an order that is {order.status} cannot be paid")
            if is_overdue(order, command.at):
                raise InvalidState(
                    f"this order's payment deadline passed at {order.expires_at}: it expires"
                    " and its stock is released"
                )
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
        case ExpireOrder():
            command.actor.require_system()
            order = _existing(state, command.order_id, command.actor)
            if order.status is not OrderStatus.PLACED:
                raise InvalidState(f"an order that is {order.status} cannot expire")
            if order.expires_at is None:
                raise InvalidState("this order has no payment deadline")
            if not is_overdue(order, command.at):
                raise NotYet(f"this order's payment deadline, {order.expires_at}, has not passed")
            return [OrderExpired(order.order_id, order.expires_at, command.at)]
        case _:
            assert_never(command)


def is_overdue(order: Order, at: datetime) -> bool:
    """Past its payment deadline (at or after it) while still unpaid."""
    return (
        order.status is OrderStatus.PLACED
        and order.expires_at is not None
        and at >= order.expires_at
    )


def _references(event: OrderEvent) -> tuple[str, ...]:
    """Placing an order refers to the products it reserves."""
    if isinstance(event, OrderPlaced):
        return tuple(product.stream_id(line.sku) for line in event.lines)
    return ()


AGGREGATE = AggregateType(
    prefix=STREAM_PREFIX,
    events=(
        OrderPlaced,
        PaymentProcessed,
        OrderShipped,
        OrderCancelled,
        PaymentRefunded,
        OrderExpired,
    ),
    evolve=evolve,
    initial=initial_state,
    state_type=Order,
    subject=lambda event: stream_id(event.order_id),
    references=_references,
    canonical_id=lambda raw: parse_order_id(raw, field="streamId's order id"),
)
