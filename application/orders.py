"""Orders' commands and their handlers: place, pay, ship, cancel (clients) and expire (the
order-expiry reaction's, application/expiry.py). Placing, shipping, cancelling and expiring
move the order and each product's reserved stock together, by the rules that span both
aggregates (domain/shop.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from application.commands import Command, handles
from application.decision import CommandResult, Executed, Loaded
from application.handler import CommandHandler
from application.idempotency import Idempotency
from domain import order, product, values
from domain import shop as rules
from domain.aggregate import DomainEvent
from domain.contact import ShippingAddress
from domain.errors import NotFound
from domain.ids import OrderId, new_order_id
from domain.values import Actor
from eventstore import ids


@dataclass(frozen=True)
class PlaceOrder(Command[order.Order]):
    actor: Actor
    lines: Sequence[tuple[str, int]]
    idempotency_key: str | None = None
    shipping_address: ShippingAddress | None = None
    """Validated by the caller (`domain.contact`), as `email`: personal data, sealed in the
    log under the customer's key, and left out of the idempotency key's fingerprint (which
    outlives a forget)."""
    email: str | None = None


@dataclass(frozen=True)
class PayOrder(Command[order.Order]):
    actor: Actor
    order_id: OrderId
    amount: object
    idempotency_key: str | None = None


@dataclass(frozen=True)
class ShipOrder(Command[order.Order]):
    actor: Actor
    order_id: OrderId


@dataclass(frozen=True)
class CancelOrder(Command[order.Order]):
    actor: Actor
    order_id: OrderId
    reason: str


@dataclass(frozen=True)
class ExpireOrder(Command[order.Order]):
    """The server's own (the order-expiry reaction): never from a client."""

    actor: Actor
    order_id: OrderId
    idempotency_key: str | None = None
    skus: tuple[str, ...] | None = None
    """The order's products, when the caller knows them (the reaction's timer took them from
    OrderPlaced): the order is then not read before the command, only checked inside it."""


@handles(PlaceOrder)
async def place_order(handler: CommandHandler, command: PlaceOrder) -> CommandResult[order.Order]:
    actor, lines, idempotency_key = command.actor, command.lines, command.idempotency_key
    requested = order.validate_lines(tuple(lines))
    key = Idempotency.of(
        actor,
        idempotency_key,
        "placeOrder",
        sorted([sku, qty] for sku, qty in requested),
        frozenset(product.stream_id(sku) for sku, _ in requested),
    )
    order_id = new_order_id(ids.uuid4())
    order_stream = order.stream_id(order_id)
    product_streams = {sku: product.stream_id(sku) for sku, _ in requested}

    window = handler.policy.payment_window

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        catalogue = {sku: loaded.state(stream) for sku, stream in product_streams.items()}
        return rules.checkout(
            order_id,
            requested,
            catalogue,
            actor,
            handler.clock(),
            window,
            command.shipping_address,
            command.email,
        )

    result = await handler.execute(
        actor,
        "PlaceOrder",
        [order_stream, *product_streams.values()],
        decide,
        key,
        new_streams={order_stream},
    )
    return await _order_result(handler, result)


@handles(PayOrder)
async def pay_order(handler: CommandHandler, command: PayOrder) -> CommandResult[order.Order]:
    actor, order_id, amount = command.actor, command.order_id, command.amount
    idempotency_key = command.idempotency_key
    paid = values.money(amount)
    stream = order.stream_id(order_id)
    key = Idempotency.of(
        actor, idempotency_key, "payOrder", [order_id, str(paid)], frozenset({stream})
    )

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        state = loaded.state(stream)
        decision = order.PayOrder(order_id, paid, actor, handler.clock())
        return {stream: list(order.decide(decision, state))}

    return await _order_result(
        handler, await handler.execute(actor, "PayOrder", [stream], decide, key)
    )


@handles(ShipOrder)
async def ship_order(handler: CommandHandler, command: ShipOrder) -> CommandResult[order.Order]:
    actor, order_id = command.actor, command.order_id
    actor.require_staff()
    return await _order_with_stock(
        handler,
        actor,
        order_id,
        "ShipOrder",
        lambda placed, stock, at: rules.ship(placed, stock, actor, at),
    )


@handles(CancelOrder)
async def cancel_order(handler: CommandHandler, command: CancelOrder) -> CommandResult[order.Order]:
    actor, order_id = command.actor, command.order_id
    reason = command.reason  # checked by the decider, with the rest
    return await _order_with_stock(
        handler,
        actor,
        order_id,
        "CancelOrder",
        lambda placed, stock, at: rules.cancel(placed, stock, reason, actor, at),
    )


@handles(ExpireOrder)
async def expire_order(handler: CommandHandler, command: ExpireOrder) -> CommandResult[order.Order]:
    actor, order_id = command.actor, command.order_id
    actor.require_system()
    key = Idempotency.of(
        actor,
        command.idempotency_key,
        "expireOrder",
        [order_id],
        frozenset({order.stream_id(order_id)}),
    )
    return await _order_with_stock(
        handler,
        actor,
        order_id,
        "ExpireOrder",
        lambda placed, stock, at: rules.expire(placed, stock, actor, at),
        key,
        command.skus,
    )


class _StaleProducts(Exception):
    """The products a caller named are not the order's: read the order instead."""


async def _order_with_stock(
    handler: CommandHandler,
    actor: Actor,
    order_id: OrderId,
    name: str,
    rule: Callable[[order.OrderState, dict[str, product.ProductState], datetime], rules.Decision],
    idempotency: Idempotency | None = None,
    skus: tuple[str, ...] | None = None,
) -> CommandResult[order.Order]:
    """Ship, cancel or expire: the order's events and each reserved product's stock move
    together. The order's lines say which products to load, so it is read first, unless the
    caller knows them (`skus`), which the decision then checks against the order it loads."""
    stream = order.stream_id(order_id)
    if skus is not None:
        try:
            return await _with_products(handler, actor, stream, name, rule, idempotency, skus)
        except _StaleProducts:
            pass
    current = await handler.store.read_stream(stream)
    if not current:
        raise NotFound(f"no order {order_id!r}")
    placed = handler.decode(current[0])
    assert isinstance(placed, order.OrderPlaced)
    known = tuple(line.sku for line in placed.lines)
    return await _with_products(handler, actor, stream, name, rule, idempotency, known)


async def _with_products(
    handler: CommandHandler,
    actor: Actor,
    stream: str,
    name: str,
    rule: Callable[[order.OrderState, dict[str, product.ProductState], datetime], rules.Decision],
    idempotency: Idempotency | None,
    skus: tuple[str, ...],
) -> CommandResult[order.Order]:
    product_streams = {sku: product.stream_id(sku) for sku in skus}

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        placed = loaded.state(stream)
        if placed is not None and not {line.sku for line in placed.lines} <= product_streams.keys():
            raise _StaleProducts
        stock = {sku: loaded.state(ps) for sku, ps in product_streams.items()}
        return rule(placed, stock, handler.clock())

    result = await handler.execute(
        actor, name, [stream, *product_streams.values()], decide, idempotency
    )
    return await _order_result(handler, result)


async def _order_result(handler: CommandHandler, executed: Executed) -> CommandResult[order.Order]:
    """The order's state after the command (a replayed PlaceOrder's is the first attempt's
    order, not the id this attempt drew)."""
    return await handler.with_state_of(executed, order.AGGREGATE)
