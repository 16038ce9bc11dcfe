"""Each product's rating from its reviews (how many, and their average): table, evolve, typed
view, query and live topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg

from domain.aggregate import DomainEvent
from domain.review import ReviewPosted
from eventstore.events import RecordedEvent
from projections.base import Row, RowProjection
from projections.slice import LiveTopic, ReadModel, changed_rows, read_position

NAME = "ratings"


@dataclass(frozen=True, slots=True)
class RatingView:
    sku: str
    review_count: int
    rating_sum: int
    position: int
    """The read model's position when this view was read."""
    changed: int
    """The position of the last review of this product."""

    @property
    def rating(self) -> float | None:
        """The average rating, None before the first review."""
        return round(self.rating_sum / self.review_count, 2) if self.review_count else None

    @classmethod
    def of(cls, row: asyncpg.Record | dict[str, Any], position: int | None = None) -> RatingView:
        return cls(
            row["sku"],
            row["review_count"],
            row["rating_sum"],
            row["read_position"] if position is None else position,
            row["position"],
        )


class RatingsProjection(RowProjection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    views: ClassVar[tuple[str, ...]] = ("product_ratings",)
    table: ClassVar[str] = "product_ratings"
    key: ClassVar[str] = "sku"
    columns: ClassVar[tuple[tuple[str, str], ...]] = (
        ("sku", "text"),
        ("review_count", "integer NOT NULL"),
        ("rating_sum", "integer NOT NULL"),
        ("position", "bigint NOT NULL"),
    )

    def key_of(self, event: DomainEvent) -> str | None:
        return event.sku if isinstance(event, ReviewPosted) else None

    def evolve(self, row: Row | None, event: DomainEvent, recorded: RecordedEvent) -> Row | None:
        assert isinstance(event, ReviewPosted)
        count, total = (row["review_count"], row["rating_sum"]) if row else (0, 0)
        return {
            "sku": event.sku,
            "review_count": count + 1,
            "rating_sum": total + event.rating,
            "position": recorded.position,
        }


async def ratings_of(pool: asyncpg.Pool, skus: list[str]) -> list[RatingView | None]:
    """The ratings of several products in one query, in the order asked (None: no review)."""
    rows = await pool.fetch(
        f"SELECT *, {read_position(NAME)} FROM readmodel.product_ratings"
        " WHERE sku = any($1::text[])",
        list(skus),
    )
    found = {r["sku"]: RatingView.of(r) for r in rows}
    return [found.get(sku) for sku in skus]


async def rating(pool: asyncpg.Pool, sku: str) -> RatingView | None:
    row = await pool.fetchrow(
        f"SELECT *, {read_position(NAME)} FROM readmodel.product_ratings WHERE sku = $1", sku
    )
    return None if row is None else RatingView.of(row)


BY_SKU = LiveTopic("rating by sku", changed_rows(NAME, "product_ratings", "sku", RatingView.of))

READ_MODEL = ReadModel(RatingsProjection(), (BY_SKU,))
