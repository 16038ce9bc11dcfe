"""The wishlist's commands and their handler: add a product (which must exist) or remove one.
Each loads the customer's wishlist stream (and, to add, the product's), decides with the pure
decider and appends."""

from __future__ import annotations

from dataclasses import dataclass

from application.commands import Command, handles
from application.decision import CommandResult, Loaded
from application.handler import CommandHandler
from domain import product, values, wishlist
from domain.aggregate import DomainEvent
from domain.errors import NotFound
from domain.values import Actor


@dataclass(frozen=True)
class AddToWishlist(Command[wishlist.Wishlist]):
    actor: Actor
    sku: str


@dataclass(frozen=True)
class RemoveFromWishlist(Command[wishlist.Wishlist]):
    actor: Actor
    sku: str


@handles(AddToWishlist)
async def add_to_wishlist(
    handler: CommandHandler, command: AddToWishlist
) -> CommandResult[wishlist.Wishlist]:
    actor, sku = command.actor, command.sku
    wishlist.require_customer(actor)  # staff: FORBIDDEN, whatever the sku
    values.sku(sku)
    stream = wishlist.stream_id(wishlist.wishlist_id(actor.id))
    product_stream = product.stream_id(sku)

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        decision = wishlist.AddToWishlist(sku, actor, handler.clock())
        events = wishlist.decide(decision, loaded.state(stream))
        if loaded.state(product_stream) is None:
            raise NotFound(f"no product with sku {sku!r}")
        return {stream: list(events)}

    executed = await handler.execute(actor, "AddToWishlist", [stream, product_stream], decide)
    return await handler.with_state(executed, stream)


@handles(RemoveFromWishlist)
async def remove_from_wishlist(
    handler: CommandHandler, command: RemoveFromWishlist
) -> CommandResult[wishlist.Wishlist]:
    actor, sku = command.actor, command.sku
    wishlist.require_customer(actor)  # staff: FORBIDDEN, whatever the sku
    values.sku(sku)
    stream = wishlist.stream_id(wishlist.wishlist_id(actor.id))

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        decision = wishlist.RemoveFromWishlist(sku, actor, handler.clock())
        return {stream: list(wishlist.decide(decision, loaded.state(stream)))}

    executed = await handler.execute(actor, "RemoveFromWishlist", [stream], decide)
    return await handler.with_state(executed, stream)
