"""The Review aggregate: a customer's rating (1 to 5) of a product, with an optional comment.
One review per customer and product: its id is derived from both, so a second one is the
same stream and is refused."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, assert_never

from domain import product, values
from domain.aggregate import AggregateType
from domain.errors import AlreadyExists, Forbidden, InvalidInput
from domain.values import Actor

STREAM_PREFIX = "review-"
MAX_COMMENT = 1_000
_NAMESPACE = uuid.UUID("6f0c3a3e-6d2b-4f55-9a43-3b6f1f1f7a11")


def review_id(sku: str, customer_id: str) -> str:
    """The one review a customer may write of a product."""
    # A uuid5, not the pair itself: stream ids are at most 200 ASCII letters, digits and
    # ._:@/+=- (the event store refuses others), while a customer id is a token's `sub`, up
    # to 200 characters of any Unicode. The same pair always gives the same stream, so a
    # second review meets the first; a sku has no newline, so no two pairs join alike.
    return str(uuid.uuid5(_NAMESPACE, f"{sku}\n{customer_id}"))


def stream_id(review: str) -> str:
    return f"{STREAM_PREFIX}{review}"


@dataclass(frozen=True, slots=True)
class ReviewPosted:
    schema_version: ClassVar[int] = 1
    review_id: str
    sku: str
    customer_id: str
    rating: int
    comment: str
    occurred_at: datetime


ReviewEvent = ReviewPosted


@dataclass(frozen=True, slots=True)
class PostReview:
    sku: str
    rating: int
    comment: str
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class Review:
    review_id: str
    sku: str
    customer_id: str
    rating: int


ReviewState = Review | None
initial_state: ReviewState = None


def evolve(state: ReviewState, event: ReviewEvent) -> ReviewState:
    match event:
        case ReviewPosted():
            return Review(event.review_id, event.sku, event.customer_id, event.rating)
        case _:
            assert_never(event)


def decide(command: PostReview, state: ReviewState) -> list[ReviewEvent]:
    """The caller has established that the product exists (the event refers to it)."""
    if command.actor.is_staff:
        raise Forbidden("reviews are written by customers")
    values.sku(command.sku)
    rating = command.rating
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput("rating must be a whole number from 1 to 5")
    comment = command.comment.strip() if isinstance(command.comment, str) else ""
    if len(comment) > MAX_COMMENT or not values.is_clean_text(comment, newlines=True):
        raise InvalidInput(f"comment: at most {MAX_COMMENT} characters, no control characters")
    if state is not None:
        raise AlreadyExists("you have already reviewed this product")
    review = review_id(command.sku, command.actor.id)
    return [ReviewPosted(review, command.sku, command.actor.id, rating, comment, command.at)]


AGGREGATE = AggregateType(
    prefix=STREAM_PREFIX,
    events=(ReviewPosted,),
    evolve=evolve,
    initial=initial_state,
    state_type=Review,
    subject=lambda event: stream_id(event.review_id),
    references=lambda event: (product.stream_id(event.sku),),
)
