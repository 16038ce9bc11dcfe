"""Reviews in the model: a customer rates a product that exists, 1 to 5, once, with a comment
of at most 1,000 characters (tab and newline allowed, no other control character); staff
are refused. The ratings read model (and `productRating`) holds each product's review count
and average."""

from __future__ import annotations

import unicodedata
import uuid
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from tests.kit.documents import REVIEW
from tests.model.features.products import Products
from tests.model.machine import Case

MAX_COMMENT = 1_000
COMMENTS = [
    "", "great", "  fine, thanks  ", "two lines\nand\ta tab", "ß" * MAX_COMMENT,
    " " + "y" * MAX_COMMENT + " ", "x" * (MAX_COMMENT + 1), "bell\x07", "\x00", "\x85",
]  # fmt: skip


def fine(comment: str) -> bool:
    """A comment a review may carry: what is left once stripped (a lone NEL is whitespace)."""
    kept = comment.strip()
    return len(kept) <= MAX_COMMENT and not any(
        unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n" for c in kept
    )


class Reviews(Products):
    def start(self) -> None:
        self.reviews: dict[tuple[str, str], int] = {}
        """(sku, customer): the rating given."""
        self.review_ids: dict[tuple[str, str], str] = {}

    def ratings(self) -> dict[str, tuple[int, int]]:
        """Per sku reviewed: (how many reviews, the sum of their ratings)."""
        found: dict[str, tuple[int, int]] = {}
        for (sku, _), rating in self.reviews.items():
            count, total = found.get(sku, (0, 0))
            found[sku] = (count + 1, total + rating)
        return found

    def _review_outcome(self, who: str, sku: str, rating: int, comment: str) -> set[str]:
        if sku not in self.products:
            return {"NOT_FOUND"}
        if who == self.staff:
            return {"FORBIDDEN"}
        if not 1 <= rating <= 5 or not fine(comment):
            return {"BAD_USER_INPUT"}
        if (sku, who) in self.reviews:
            return {"ALREADY_EXISTS"}
        return set()

    @rule(data=st.data(), rating=st.integers(0, 6), comment=st.sampled_from(COMMENTS))
    def post_review(self, data: st.DataObject, rating: int, comment: str) -> None:
        who = data.draw(st.sampled_from([*self.customers, self.staff]), label="reviewer")
        sku = self.some_sku(data)
        errors = self._review_outcome(who, sku, rating, comment)
        variables = {"sku": sku, "rating": rating, "comment": comment}
        payload = self.expect(who, REVIEW, variables, errors)
        if payload is not None:
            self._reviewed(who, sku, rating, payload)

    @precondition(lambda self: bool(self.reviews))
    @rule(data=st.data(), rating=st.integers(1, 5))
    def review_again(self, data: st.DataObject, rating: int) -> None:
        """A customer reviews a product they have reviewed: refused, the first one stands."""
        sku, who = data.draw(st.sampled_from(sorted(self.reviews)), label="reviewed")
        variables = {"sku": sku, "rating": rating, "comment": "changed my mind"}
        self.expect(who, REVIEW, variables, {"ALREADY_EXISTS"})

    def _reviewed(self, who: str, sku: str, rating: int, payload: dict[str, Any]) -> None:
        review_id = payload["reviewId"]
        assert review_id == str(uuid.UUID(review_id))
        assert review_id not in self.review_ids.values(), "one review id per customer and sku"
        self.reviews[(sku, who)] = rating
        self.review_ids[(sku, who)] = review_id
        count, total = self.ratings()[sku]
        seen = payload["rating"]  # as of the review's position: read your own write
        assert (seen["sku"], seen["reviewCount"], seen["rating"]) == (
            sku,
            count,
            round(total / count, 2),
        )
        assert seen["position"] >= payload["position"]

    def hostile_cases(self, text: str, number: str, integer: int) -> list[Case]:
        known, who = self.sku_of(0), self.customers[1]
        return [
            (who, REVIEW, {"sku": text, "rating": 3, "comment": ""}),
            (who, REVIEW, {"sku": known, "rating": integer, "comment": ""}),
            (who, REVIEW, {"sku": known, "rating": 3, "comment": text}),
        ]

    def accept(self, query: str, variables: dict[str, Any], payload: dict[str, Any]) -> bool:
        """A comment that is odd but fine, on a product not yet reviewed by the customer."""
        if query != REVIEW:
            return False
        who, sku, rating = self.customers[1], variables["sku"], variables["rating"]
        assert self._review_outcome(who, sku, rating, variables["comment"]) == set()
        self._reviewed(who, sku, rating, payload)
        return True

    def check(self) -> None:
        """Each product's review count and rating sum in the ratings read model, its rating
        through the API (none before the first review), and one event per review."""
        ratings = self.ratings()
        rows = {
            r["sku"]: (r["review_count"], r["rating_sum"])
            for r in self.s.db.fetch(
                "SELECT sku, review_count, rating_sum FROM readmodel.product_ratings"
                " WHERE sku LIKE $1",
                self.prefix + "%",
            )
        }
        assert rows == ratings
        skus = sorted(self.products)[:25]  # (the alias cap is 30)
        if skus:
            variables = {f"s{i}": sku for i, sku in enumerate(skus)}
            fields = "".join(
                f" r{i}: productRating(sku: $s{i}) {{ rating reviewCount }}"
                for i in range(len(skus))
            )
            declared = ", ".join(f"${v}: String!" for v in variables)
            data = self.ask(f"query({declared}) {{{fields} }}", variables)
            for i, sku in enumerate(skus):
                count, total = ratings.get(sku, (0, 0))
                average = round(total / count, 2) if count else None
                assert data[f"r{i}"] == {"rating": average, "reviewCount": count}, sku
        posted = {
            r["stream_id"]: r["n"]
            for r in self.s.db.log_fetch(
                "SELECT stream_id, count(*) AS n FROM eventgraph.events"
                " WHERE stream_id = any($1::text[]) GROUP BY stream_id",
                [f"review-{i}" for i in self.review_ids.values()],
            )
        }
        assert posted == {f"review-{i}": 1 for i in self.review_ids.values()}
