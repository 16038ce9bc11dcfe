"""The shop's command handlers, one per command, and the map from command to handler: each
builds its decision from the pure deciders (and the rules that span aggregates) and hands it
to the command handler, which loads, checks, appends and retries."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from application import commands, reviews
from application.commands import Command, S
from application.expiry import OrderExpiry
from application.handler import CommandHandler, CommandResult, Loaded
from application.idempotency import Idempotency
from application.low_stock import LowStock
from application.reactions import Reaction
from domain import order, product, values
from domain import shop as rules
from domain.aggregate import DomainEvent
from domain.errors import DomainError, NotFound
from domain.ids import OrderId, new_order_id
from domain.values import Actor
from eventstore import ids
from eventstore.store import EventStore
from support import metrics

# Products ------------------------------------------------------------------------------


async def register_product(
    handler: CommandHandler, command: commands.RegisterProduct
) -> CommandResult[product.Product]:
    actor, sku, name = command.actor, command.sku, command.name
    unit_price, initial_stock = command.unit_price, command.initial_stock
    actor.require_staff()
    decision = product.RegisterProduct(
        values.sku(sku), name, unit_price, initial_stock, actor, handler.clock()
    )
    return await _product_command(handler, actor, sku, decision)


async def restock_product(
    handler: CommandHandler, command: commands.RestockProduct
) -> CommandResult[product.Product]:
    actor, sku, quantity = command.actor, command.sku, command.quantity
    actor.require_staff()
    values.sku(sku)  # names the stream: parsed before anything is loaded
    return await _product_command(
        handler, actor, sku, product.RestockProduct(sku, quantity, actor, handler.clock())
    )


async def _product_command(
    handler: CommandHandler, actor: Actor, sku: str, command: product.ProductCommand
) -> CommandResult[product.Product]:
    stream = product.stream_id(sku)

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        state = loaded.state(stream)
        return {stream: list(product.decide(command, state))}

    result = await handler.execute(actor, type(command).__name__, [stream], decide)
    return await handler.with_state(result, stream)


# Orders --------------------------------------------------------------------------------


async def place_order(
    handler: CommandHandler, command: commands.PlaceOrder
) -> CommandResult[order.Order]:
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
        return rules.checkout(order_id, requested, catalogue, actor, handler.clock(), window)

    result = await handler.execute(
        actor,
        "PlaceOrder",
        [order_stream, *product_streams.values()],
        decide,
        key,
        new_streams={order_stream},
    )
    return await handler.order_result(result)


async def pay_order(
    handler: CommandHandler, command: commands.PayOrder
) -> CommandResult[order.Order]:
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

    return await handler.order_result(
        await handler.execute(actor, "PayOrder", [stream], decide, key)
    )


async def ship_order(
    handler: CommandHandler, command: commands.ShipOrder
) -> CommandResult[order.Order]:
    actor, order_id = command.actor, command.order_id
    actor.require_staff()
    return await _order_with_stock(
        handler,
        actor,
        order_id,
        "ShipOrder",
        lambda placed, stock, at: rules.ship(placed, stock, actor, at),
    )


async def cancel_order(
    handler: CommandHandler, command: commands.CancelOrder
) -> CommandResult[order.Order]:
    actor, order_id = command.actor, command.order_id
    reason = command.reason  # checked by the decider, with the rest
    return await _order_with_stock(
        handler,
        actor,
        order_id,
        "CancelOrder",
        lambda placed, stock, at: rules.cancel(placed, stock, reason, actor, at),
    )


async def expire_order(
    handler: CommandHandler, command: commands.ExpireOrder
) -> CommandResult[order.Order]:
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
    )


async def flag_low_stock(
    handler: CommandHandler, command: commands.FlagLowStock
) -> CommandResult[product.Product]:
    actor, sku = command.actor, command.sku
    actor.require_system()
    stream = product.stream_id(values.sku(sku))
    key = Idempotency.of(
        actor,
        command.idempotency_key,
        "flagLowStock",
        [sku, command.threshold],
        frozenset({stream}),
    )
    decision = product.FlagLowStock(sku, command.threshold, actor, handler.clock())

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        return {stream: list(product.decide(decision, loaded.state(stream)))}

    result = await handler.execute(actor, "FlagLowStock", [stream], decide, key)
    return await handler.with_state(result, stream)


async def _order_with_stock(
    handler: CommandHandler,
    actor: Actor,
    order_id: OrderId,
    name: str,
    rule: Callable[[order.OrderState, dict[str, product.ProductState], datetime], rules.Decision],
    idempotency: Idempotency | None = None,
) -> CommandResult[order.Order]:
    """Ship or cancel: the order's events and each reserved product's stock move together.
    The order's lines say which products to load, so it is read first."""
    stream = order.stream_id(order_id)
    current = await handler.store.read_stream(stream)
    if not current:
        raise NotFound(f"no order {order_id!r}")
    placed = handler.decode(current[0])
    assert isinstance(placed, order.OrderPlaced)
    product_streams = {line.sku: product.stream_id(line.sku) for line in placed.lines}

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        stock = {sku: loaded.state(ps) for sku, ps in product_streams.items()}
        return rule(loaded.state(stream), stock, handler.clock())

    result = await handler.execute(
        actor, name, [stream, *product_streams.values()], decide, idempotency
    )
    return await handler.order_result(result)


Handler = Callable[[CommandHandler, Any], Awaitable[CommandResult[Any]]]

HANDLERS: dict[type[Command[Any]], Handler] = {
    commands.RegisterProduct: register_product,
    commands.RestockProduct: restock_product,
    commands.PlaceOrder: place_order,
    commands.PayOrder: pay_order,
    commands.ShipOrder: ship_order,
    commands.CancelOrder: cancel_order,
    commands.ExpireOrder: expire_order,
    commands.FlagLowStock: flag_low_stock,
    reviews.PostReview: reviews.post_review,
}


def reactions(policy: commands.Policy) -> list[Reaction]:
    """The shop's reactions (application/reactions.py), as the policy configures them. A new
    reaction is a module like `expiry.py` and one entry here."""
    found: list[Reaction] = [OrderExpiry()]
    if policy.low_stock_threshold > 0:
        found.append(LowStock(policy.low_stock_threshold))
    return found


class Shop:
    """Where a command goes: `await shop.handle(PlaceOrder(actor, lines))`."""

    def __init__(
        self,
        store: EventStore,
        clock: Callable[[], datetime] | None = None,
        policy: commands.Policy | None = None,
    ) -> None:
        self.store = store
        self.handler = CommandHandler(store, clock, policy)

    async def handle(self, command: Command[S]) -> CommandResult[S]:
        name = type(command).__name__
        started = time.perf_counter()
        outcome = "INTERNAL"
        try:
            result: CommandResult[S] = await HANDLERS[type(command)](self.handler, command)
            outcome = "replayed" if result.replayed else "ok"
            return result
        except DomainError as exc:
            outcome = exc.code
            raise
        finally:
            metrics.COMMANDS.labels(name, outcome).inc()
            metrics.COMMAND_SECONDS.labels(name).observe(time.perf_counter() - started)
