"""Rules that span aggregates, as pure functions over their states: what checkout and
fulfilment decide for the order and for each product at once. The command handler loads the
states, calls these, and appends every stream's events in one transaction or none.

Each function returns events by stream id, so that a decision about several aggregates is one
value that a test can compare (tests/unit/test_shop_rules.py: given states, when a command,
then events)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from domain import order, product
from domain.aggregate import DomainEvent
from domain.contact import ShippingAddress
from domain.errors import NotFound
from domain.ids import OrderId
from domain.values import Actor

Decision = dict[str, list[DomainEvent]]
"""Events to append, by stream id."""


def checkout(
    order_id: OrderId,
    requested: tuple[tuple[str, int], ...],
    catalogue: Mapping[str, product.ProductState],
    actor: Actor,
    at: datetime,
    payment_window: timedelta | None = None,
    shipping_address: ShippingAddress | None = None,
    email: str | None = None,
) -> Decision:
    """Place an order for `requested` (sku, quantity) lines: each line priced from the
    catalogue as it is now, and its stock reserved on its product, all at once; unpaid after
    `payment_window` (None: never), it expires. The shipping address and email, validated
    (`domain.contact`), go with the order as personal data."""
    order.validate_lines(requested)
    products: dict[str, product.Product] = {}
    for sku, _ in requested:
        state = catalogue.get(sku)
        if state is None:
            raise NotFound(f"no product with sku {sku!r}")
        products[sku] = state
    priced = tuple(order.OrderLine(sku, qty, products[sku].unit_price) for sku, qty in requested)
    decided: Decision = {
        order.stream_id(order_id): list(
            order.decide(
                order.PlaceOrder(
                    order_id, priced, actor, at, payment_window, shipping_address, email
                ),
                None,
            )
        )
    }
    for sku, quantity in requested:
        reserve = product.ReserveStock(sku, order_id, quantity, at)
        decided[product.stream_id(sku)] = list(product.decide(reserve, products[sku]))
    return decided


def ship(
    placed: order.OrderState, stock: Mapping[str, product.ProductState], actor: Actor, at: datetime
) -> Decision:
    """Ship a paid order: the reserved units of each line leave the shelf."""
    return _settle(placed, stock, at, lambda o: order.ShipOrder(o, actor, at), product.ShipStock)


def cancel(
    placed: order.OrderState,
    stock: Mapping[str, product.ProductState],
    reason: str,
    actor: Actor,
    at: datetime,
) -> Decision:
    """Cancel an order before it ships: its reservations are released (and what was paid is
    refunded, by the order itself)."""
    return _settle(
        placed, stock, at, lambda o: order.CancelOrder(o, reason, actor, at), product.ReleaseStock
    )


def expire(
    placed: order.OrderState, stock: Mapping[str, product.ProductState], actor: Actor, at: datetime
) -> Decision:
    """Expire an order unpaid past its deadline: its reservations are released, as a cancel
    releases them, in the same append."""
    return _settle(
        placed, stock, at, lambda o: order.ExpireOrder(o, actor, at), product.ReleaseStock
    )


def _settle(
    placed: order.OrderState,
    stock: Mapping[str, product.ProductState],
    at: datetime,
    make: Callable[[OrderId], order.OrderCommand],
    move: type[product.ShipStock] | type[product.ReleaseStock],
) -> Decision:
    if placed is None:
        raise NotFound("no such order")
    decided: Decision = {
        order.stream_id(placed.order_id): list(order.decide(make(placed.order_id), placed))
    }
    for line in placed.lines:
        step = move(line.sku, placed.order_id, line.quantity, at)
        decided[product.stream_id(line.sku)] = list(product.decide(step, stock.get(line.sku)))
    return decided
