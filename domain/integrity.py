"""What an event is about and what it refers to, so that the command handler can refuse to
append an event that a projection could not apply.

Every event belongs to the stream of the entity it is about (`subject`), and may refer to
other entities (`references`: an order whose stock moved). A command may append an event
only to its subject's stream, and only while everything it refers to exists after the
command, under the same canonical id the read models will look it up by. A new event type
that forgets to say so fails here, in the type check (`assert_never`), not in production."""

from __future__ import annotations

from typing import assert_never

from domain import order, product
from domain.codec import DomainEvent


class IntegrityError(Exception):
    """A decided event does not fit the streams the command loaded: a bug, never appended."""


def subject(event: DomainEvent) -> str:
    match event:
        case (
            order.OrderPlaced()
            | order.PaymentProcessed()
            | order.OrderShipped()
            | order.OrderCancelled()
            | order.PaymentRefunded()
        ):
            return order.stream_id(event.order_id)
        case product.ProductRegistered() | product.InventoryUpdated():
            return product.stream_id(event.sku)
        case _:
            assert_never(event)


def references(event: DomainEvent) -> tuple[str, ...]:
    match event:
        case product.InventoryUpdated(order_id=order_id) if order_id is not None:
            return (order.stream_id(order_id),)
        case order.OrderPlaced():
            return tuple(product.stream_id(line.sku) for line in event.lines)
        case _:
            return ()


def check(decided: dict[str, list[DomainEvent]], exists: dict[str, bool]) -> None:
    """Raise IntegrityError unless each event of `decided` (stream -> events) is about its
    stream and refers only to streams that exist after the command (`exists`)."""
    for stream, events in decided.items():
        for event in events:
            about = subject(event)
            if about != stream:
                raise IntegrityError(f"{type(event).__name__} about {about} decided for {stream}")
            for ref in references(event):
                if not exists.get(ref, False):
                    raise IntegrityError(
                        f"{type(event).__name__} on {stream} refers to {ref}, which the"
                        " command did not establish"
                    )
