"""Reviews in the API: `postReview`, the `productRating` query and live view, and `rating` /
`reviewCount` added to the products feature's Product."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import strawberry

from application.reviews import PostReview
from domain import values
from projections import ratings
from schema.context import Info
from schema.feature import Feature
from schema.paging import given
from schema.products import Product
from schema.scalars import Position
from schema.sharing import shared
from schema.types import DomainEvent


@strawberry.type
class ProductRating:
    sku: str

    @strawberry.field(description="Stable key for client caches: the sku.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"rating:{self.sku}")

    rating: float | None = strawberry.field(description="Average of 1 to 5; null: no review yet.")
    review_count: int
    position: Position

    @classmethod
    def of(cls, sku: str, view: ratings.RatingView | None, unrated_at: int = 0) -> ProductRating:
        """`unrated_at`: for a product with no review, a position the ratings had reached."""
        if view is None:
            return cls(sku=sku, rating=None, review_count=0, position=unrated_at)
        return cls(
            sku=sku, rating=view.rating, review_count=view.review_count, position=view.position
        )


async def _rating(info: Info, sku: str) -> ProductRating:
    # With no review, the ratings read model's position as this process knows it: it had
    # reached at least that far when the read found nothing.
    unrated_at = info.context.services.watch.position(ratings.NAME)
    return ProductRating.of(sku, await ratings.rating(info.context.pool, sku), unrated_at)


@strawberry.type
class ReviewPayload:
    review_id: strawberry.ID
    position: Position
    events: list[DomainEvent]
    sku: strawberry.Private[str]

    @strawberry.field(description="The product's rating as of position (read your own write).")
    async def rating(self, info: Info) -> ProductRating:
        await info.context.at_least(ratings.NAME, self.position)
        return await _rating(info, self.sku)


@strawberry.type
class ReviewMutation:
    @strawberry.mutation(
        description=(
            "A customer rates a product they may buy, 1 to 5, once (ALREADY_EXISTS after);"
            " NOT_FOUND for an unknown sku."
        )
    )
    async def post_review(
        self, info: Info, sku: str, rating: int, comment: str = ""
    ) -> ReviewPayload:
        command = PostReview(info.context.actor, sku, rating, comment)
        result = await info.context.handle(command)
        return ReviewPayload(
            review_id=strawberry.ID(result.state.review_id),
            position=result.position,
            events=[DomainEvent.from_recorded(e) for e in result.events],
            sku=result.state.sku,
        )


@strawberry.type
class ReviewQuery:
    @strawberry.field(description="Any signed-in user.")
    async def product_rating(
        self, info: Info, sku: str, at_least: Position | None = strawberry.UNSET
    ) -> ProductRating:
        info.context.require_user()
        values.sku(sku)
        await info.context.at_least(ratings.NAME, given(at_least))
        return await _rating(info, sku)


@strawberry.type
class ReviewSubscription:
    @strawberry.subscription(description="Live rating of one product: any signed-in user.")
    @shared("role")
    async def product_rating(self, info: Info, sku: str) -> AsyncGenerator[ProductRating, None]:
        info.context.require_user()
        values.sku(sku)
        live = info.context.services.live
        # Known to be reached before the read: with no review found, a position it reflects.
        unrated_at = info.context.services.watch.position(ratings.NAME)
        await info.context.at_least(ratings.NAME)
        first = await ratings.rating(info.context.pool, sku)
        if first is None:
            yield ProductRating.of(sku, None, unrated_at)
        watching = live.watch(ratings.BY_SKU, sku, first, start=unrated_at)
        async with contextlib.aclosing(watching) as views:
            async for view in views:
                yield ProductRating.of(sku, view)


async def _rating_of(root: Product, info: Info) -> float | None:
    view = await info.context.loader(ratings.ratings_of).load(root.sku)
    return None if view is None else view.rating


async def _review_count_of(root: Product, info: Info) -> int:
    view = await info.context.loader(ratings.ratings_of).load(root.sku)
    return 0 if view is None else view.review_count


@strawberry.type
class ProductReviews:
    """Fields added to Product."""

    rating: float | None = strawberry.field(
        resolver=_rating_of,
        description="Average review rating, 1 to 5; null before the first review.",
    )
    review_count: int = strawberry.field(
        resolver=_review_count_of, description="How many customers reviewed this product."
    )


FEATURE = Feature(
    ReviewQuery, ReviewMutation, ReviewSubscription, extends=((Product, ProductReviews),)
)
