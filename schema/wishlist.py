"""The wishlist in the API: `addToWishlist` / `removeFromWishlist`, the customer's own
`myWishlist` (query and live view, which also moves when a wished product's stock or price
does), and the staff's `mostWished`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from application.decision import CommandResult
from application.wishlist import AddToWishlist, RemoveFromWishlist
from projections import products, wishlist
from schema.context import Info
from schema.feature import Feature
from schema.paging import MAX_PAGE, given, page_size
from schema.products import Product
from schema.scalars import Position
from schema.sharing import shared
from schema.types import DomainEvent


@strawberry.type
class Wishlist:
    @strawberry.field(description="Stable key for client caches: the customer id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.customer_id)

    customer_id: str
    items: list[Product] = strawberry.field(
        description=(
            "The wished products' current views (name, price, stock), in the order they were added."
        )
    )
    position: Position = strawberry.field(
        description="The read model's position when this view was read (see Positions on views)."
    )

    @classmethod
    def from_view(cls, view: wishlist.WishlistView) -> Wishlist:
        return cls(
            customer_id=view.customer_id,
            items=[Product.from_view(p) for p in view.items],
            position=view.position,
        )


@strawberry.type
class ProductWishes:
    sku: str
    wishes: int = strawberry.field(
        description="Customers who have the product on their wishlist now."
    )


@strawberry.type
class WishlistPayload:
    position: Position
    events: list[DomainEvent]
    customer_id: strawberry.Private[str]

    @strawberry.field(description="The wishlist as of position (read your own write).")
    async def wishlist(self, info: Info) -> Wishlist:
        # Its items are the products read model's rows: both must have reached the command.
        await info.context.at_least(wishlist.NAME, self.position)
        await info.context.at_least(products.NAME, self.position)
        return Wishlist.from_view(await wishlist.wishlist_of(info.context.pool, self.customer_id))

    @classmethod
    def of(cls, result: CommandResult[Any], customer_id: str) -> WishlistPayload:
        events = [DomainEvent.from_recorded(e) for e in result.events]
        return cls(position=result.position, events=events, customer_id=customer_id)


@strawberry.type
class WishlistQuery:
    @strawberry.field(description="A customer's own wishlist (empty when they have none).")
    async def my_wishlist(
        self, info: Info, at_least: Position | None = strawberry.UNSET
    ) -> Wishlist:
        actor = info.context.actor
        await info.context.at_least(wishlist.NAME, given(at_least))
        await info.context.at_least(products.NAME, given(at_least))
        return Wishlist.from_view(await wishlist.wishlist_of(info.context.pool, actor.id))

    @strawberry.field(description="Staff only. Most wished products first.")
    async def most_wished(
        self, info: Info, first: int = 10, at_least: Position | None = strawberry.UNSET
    ) -> list[ProductWishes]:
        info.context.actor.require_staff()
        limit = page_size(first, MAX_PAGE)
        await info.context.at_least(wishlist.NAME, given(at_least))
        return [
            ProductWishes(sku=w.sku, wishes=w.wishes)
            for w in await wishlist.most_wished(info.context.pool, limit)
        ]


@strawberry.type
class WishlistMutation:
    @strawberry.mutation(
        description=(
            "A customer only (staff: FORBIDDEN). NOT_FOUND for an unknown sku; a sku already"
            " on the list: ALREADY_EXISTS; more than 50 items: BAD_USER_INPUT."
        )
    )
    async def add_to_wishlist(self, info: Info, sku: str) -> WishlistPayload:
        actor = info.context.actor
        return WishlistPayload.of(await info.context.handle(AddToWishlist(actor, sku)), actor.id)

    @strawberry.mutation(description="A customer only. NOT_FOUND when the sku is not on the list.")
    async def remove_from_wishlist(self, info: Info, sku: str) -> WishlistPayload:
        actor = info.context.actor
        result = await info.context.handle(RemoveFromWishlist(actor, sku))
        return WishlistPayload.of(result, actor.id)


@strawberry.type
class WishlistSubscription:
    @strawberry.subscription(
        description=(
            "The customer's own wishlist, pushed when it changes or when a wished product's"
            " view changes."
        )
    )
    @shared("user")
    async def my_wishlist(self, info: Info) -> AsyncGenerator[Wishlist, None]:
        actor = info.context.actor
        await info.context.at_least(wishlist.NAME)
        # A joined view reads its first view itself (empty when there is none), then every
        # change to the wishlist or to one of its products.
        watching = info.context.services.live.watch(wishlist.BY_CUSTOMER, actor.id, None)
        async with contextlib.aclosing(watching) as views:
            async for view in views:
                yield Wishlist.from_view(view)


FEATURE = Feature(WishlistQuery, WishlistMutation, WishlistSubscription)
