"""Given events, when a command, then events or an error: the Review decider and the ratings
read model's evolve, both pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import review
from domain.errors import AlreadyExists, Forbidden, InvalidInput
from domain.values import Actor
from eventstore.events import RecordedEvent
from projections.ratings import RatingsProjection, RatingView

NOW = datetime(2026, 11, 26, tzinfo=UTC)
ANN = Actor("ann", "customer")


def post(rating: int = 4, comment: str = "good", actor: Actor = ANN) -> review.PostReview:
    return review.PostReview("SKU-1", rating, comment, actor, NOW)


def test_a_customer_reviews_a_product_once() -> None:
    [posted] = review.decide(post(), None)
    assert posted == review.ReviewPosted(
        review.review_id("SKU-1", "ann"), "SKU-1", "ann", 4, "good", NOW
    )
    with pytest.raises(AlreadyExists):
        review.decide(post(5), review.evolve(None, posted))


def test_the_review_id_is_one_per_customer_and_product() -> None:
    assert review.review_id("A", "ann") == review.review_id("A", "ann")
    assert len({review.review_id(s, c) for s in "AB" for c in ("ann", "bob")}) == 4


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (post(0), InvalidInput),
        (post(6), InvalidInput),
        (post(True), InvalidInput),  # type: ignore[arg-type]
        (post(3, "x" * 1001), InvalidInput),
        (post(3, "bad\x00"), InvalidInput),
        (post(3, actor=Actor("sam", "staff")), Forbidden),
    ],
)
def test_what_a_review_may_not_be(command: review.PostReview, error: type[Exception]) -> None:
    with pytest.raises(error):
        review.decide(command, None)


def recorded(position: int) -> RecordedEvent:
    return RecordedEvent(position, None, "s", 1, "ReviewPosted", 1, {}, {}, NOW)  # type: ignore[arg-type]


def test_ratings_count_and_average_each_review() -> None:
    projection = RatingsProjection()
    row = None
    for position, stars in enumerate([5, 4, 3], start=1):
        event = review.ReviewPosted(f"r{position}", "SKU-1", f"c{position}", stars, "", NOW)
        row = projection.evolve(row, event, recorded(position))
    assert row == {"sku": "SKU-1", "review_count": 3, "rating_sum": 12, "position": 3}
    view = RatingView.of({**row, "read_position": 3})
    assert view.rating == 4.0 and RatingView("X", 0, 0, 0, 0).rating is None
