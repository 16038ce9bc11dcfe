"""The catalogue's commands and their handlers: register and restock a product (staff), and
flag one low on stock (the low-stock reaction's, application/low_stock.py). Each loads the
product's stream, decides with the pure decider and appends."""

from __future__ import annotations

from dataclasses import dataclass

from application.commands import Command, handles
from application.decision import CommandResult, Loaded
from application.handler import CommandHandler
from application.idempotency import Idempotency
from domain import product, values
from domain.aggregate import DomainEvent
from domain.values import Actor


@dataclass(frozen=True)
class RegisterProduct(Command[product.Product]):
    actor: Actor
    sku: str
    name: str
    unit_price: object
    initial_stock: int = 0


@dataclass(frozen=True)
class RestockProduct(Command[product.Product]):
    actor: Actor
    sku: str
    quantity: int


@dataclass(frozen=True)
class FlagLowStock(Command[product.Product]):
    """The server's own (the low-stock reaction): never from a client."""

    actor: Actor
    sku: str
    threshold: int
    idempotency_key: str | None = None


@handles(RegisterProduct)
async def register_product(
    handler: CommandHandler, command: RegisterProduct
) -> CommandResult[product.Product]:
    actor, sku, name = command.actor, command.sku, command.name
    unit_price, initial_stock = command.unit_price, command.initial_stock
    actor.require_staff()
    decision = product.RegisterProduct(
        values.sku(sku), name, unit_price, initial_stock, actor, handler.clock()
    )
    return await _product_command(handler, actor, sku, decision)


@handles(RestockProduct)
async def restock_product(
    handler: CommandHandler, command: RestockProduct
) -> CommandResult[product.Product]:
    actor, sku, quantity = command.actor, command.sku, command.quantity
    actor.require_staff()
    values.sku(sku)  # names the stream: parsed before anything is loaded
    return await _product_command(
        handler, actor, sku, product.RestockProduct(sku, quantity, actor, handler.clock())
    )


@handles(FlagLowStock)
async def flag_low_stock(
    handler: CommandHandler, command: FlagLowStock
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


async def _product_command(
    handler: CommandHandler, actor: Actor, sku: str, command: product.ProductCommand
) -> CommandResult[product.Product]:
    stream = product.stream_id(sku)

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        state = loaded.state(stream)
        return {stream: list(product.decide(command, state))}

    result = await handler.execute(actor, type(command).__name__, [stream], decide)
    return await handler.with_state(result, stream)
