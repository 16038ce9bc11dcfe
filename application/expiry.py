"""Order expiry, a reaction with a deadline: an order placed with a payment deadline gets a
timer for it; paying, cancelling or expiring it cancels the timer; a timer that comes due
asks the order to expire (which releases its stock). The deadline itself is decided when the
order is placed (`OrderPlaced.expiresAt`), and the order refuses a payment after it, so a
late timer never lets a late payment in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from application import orders
from application.reactions import Cancel, Effect, Schedule, Timer
from domain.aggregate import DomainEvent
from domain.ids import OrderId
from domain.order import OrderCancelled, OrderExpired, OrderPlaced, PaymentProcessed
from domain.values import Actor
from eventstore.events import RecordedEvent


class OrderExpiry:
    name: ClassVar[str] = "order-expiry"
    events: ClassVar[tuple[type, ...]] = (
        OrderPlaced,
        PaymentProcessed,
        OrderCancelled,
        OrderExpired,
    )

    def react(self, event: DomainEvent, recorded: RecordedEvent) -> Sequence[Effect]:
        match event:
            case OrderPlaced(expires_at=datetime() as deadline):
                skus = [line.sku for line in event.lines]  # so that firing need not read it
                return (
                    Schedule(event.order_id, deadline, {"orderId": event.order_id, "skus": skus}),
                )
            case PaymentProcessed() | OrderCancelled() | OrderExpired():
                return (Cancel(event.order_id),)
        return ()  # placed without a deadline

    def command(self, timer: Timer) -> orders.ExpireOrder:
        skus = timer.data.get("skus")  # timers scheduled before it was kept: read the order
        return orders.ExpireOrder(
            Actor.system(self.name),
            OrderId(timer.data["orderId"]),
            timer.idempotency_key,
            tuple(skus) if isinstance(skus, list) else None,
        )
