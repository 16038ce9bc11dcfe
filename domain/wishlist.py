"""The Wishlist aggregate: the products a customer wants to remember, in the order added, at
most MAX_ITEMS, each once. One wishlist per customer: its stream is named from the customer
id, so adding to it never needs to know whether one exists yet."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, assert_never

from domain import product, values
from domain.aggregate import AggregateType
from domain.errors import AlreadyExists, Forbidden, InvalidInput, NotFound
from domain.values import Actor

STREAM_PREFIX = "wishlist-"
MAX_ITEMS = 50
_NAMESPACE = uuid.UUID("0b9d5c2e-41f7-4b8e-9d1a-6c3e8f2a7b54")


def wishlist_id(customer_id: str) -> str:
    """The one wishlist of a customer. Stream ids are ASCII (they name rows, metrics and
    broker routing keys), while a customer id is any Unicode a token carries: the id is a
    uuid5 of it, stable and ASCII, never the customer id itself."""
    return str(uuid.uuid5(_NAMESPACE, customer_id))


def stream_id(wishlist: str) -> str:
    return f"{STREAM_PREFIX}{wishlist}"


@dataclass(frozen=True, slots=True)
class WishlistItemAdded:
    schema_version: ClassVar[int] = 1
    wishlist_id: str
    customer_id: str
    sku: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class WishlistItemRemoved:
    schema_version: ClassVar[int] = 1
    wishlist_id: str
    customer_id: str
    sku: str
    occurred_at: datetime


WishlistEvent = WishlistItemAdded | WishlistItemRemoved


@dataclass(frozen=True, slots=True)
class AddToWishlist:
    sku: str
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class RemoveFromWishlist:
    sku: str
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class Wishlist:
    customer_id: str
    items: tuple[str, ...]
    """Skus, in the order added."""


WishlistState = Wishlist | None
initial_state: WishlistState = None


def evolve(state: WishlistState, event: WishlistEvent) -> WishlistState:
    items = state.items if state else ()
    match event:
        case WishlistItemAdded():
            return Wishlist(event.customer_id, (*items, event.sku))
        case WishlistItemRemoved():
            return Wishlist(event.customer_id, tuple(s for s in items if s != event.sku))
        case _:
            assert_never(event)


def require_customer(actor: Actor) -> None:
    if actor.role != "customer":
        raise Forbidden("a wishlist belongs to a customer")


def decide(
    command: AddToWishlist | RemoveFromWishlist, state: WishlistState
) -> list[WishlistEvent]:
    """For an add, the caller has established that the product exists (the event refers to
    it)."""
    require_customer(command.actor)
    sku = values.sku(command.sku)
    items = state.items if state else ()
    wishlist, customer = wishlist_id(command.actor.id), command.actor.id
    match command:
        case AddToWishlist():
            if sku in items:
                raise AlreadyExists(f"{sku!r} is already on your wishlist")
            if len(items) >= MAX_ITEMS:
                raise InvalidInput(f"a wishlist holds at most {MAX_ITEMS} products")
            return [WishlistItemAdded(wishlist, customer, sku, command.at)]
        case RemoveFromWishlist():
            if sku not in items:
                raise NotFound(f"{sku!r} is not on your wishlist")
            return [WishlistItemRemoved(wishlist, customer, sku, command.at)]
        case _:
            assert_never(command)


AGGREGATE = AggregateType(
    prefix=STREAM_PREFIX,
    events=(WishlistItemAdded, WishlistItemRemoved),
    evolve=evolve,
    initial=initial_state,
    state_type=Wishlist,
    subject=lambda event: stream_id(event.wishlist_id),
    references=lambda event: (
        (product.stream_id(event.sku),) if isinstance(event, WishlistItemAdded) else ()
    ),
)
