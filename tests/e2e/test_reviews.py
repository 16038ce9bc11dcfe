"""Reviews end to end, the feature docs/extending.md adds by following its own steps."""

from __future__ import annotations

import pytest

from tests.kit.documents import register
from tests.kit.server import Users, new_sku, token
from tests.kit.ws import acked

POST = """mutation($sku: String!, $rating: Int!, $comment: String!) {
  postReview(sku: $sku, rating: $rating, comment: $comment) {
    reviewId position rating { sku rating reviewCount position } } }"""
RATING = """query($sku: String!, $at: Position) {
  productRating(sku: $sku, atLeast: $at) { rating reviewCount position }
  product(sku: $sku) { sku rating reviewCount } }"""
LIVE = "subscription($sku: String!) { productRating(sku: $sku) { rating reviewCount position } }"


async def test_customers_rate_a_product_and_everyone_sees_the_average(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    first = (await users.alice.ok(POST, {"sku": sku, "rating": 5, "comment": "great"}))[
        "postReview"
    ]
    assert first["rating"] == {
        "sku": sku,
        "rating": 5.0,
        "reviewCount": 1,
        "position": first["position"],
    }
    second = (await users.bob.ok(POST, {"sku": sku, "rating": 2, "comment": ""}))["postReview"]
    data = await users.staff.ok(RATING, {"sku": sku, "at": second["position"]})
    assert data["productRating"]["rating"] == 3.5 and data["productRating"]["reviewCount"] == 2
    assert data["product"] == {"sku": sku, "rating": 3.5, "reviewCount": 2}
    page = await users.staff.ok(
        "{ products(first: 100) { edges { node { sku rating reviewCount } } } }"
    )  # many products' ratings, batched into one query per page
    nodes = [e["node"] for e in page["products"]["edges"]]
    assert nodes and all((n["rating"] is None) == (n["reviewCount"] == 0) for n in nodes)


@pytest.mark.parametrize(
    ("who", "rating", "code"),
    [("alice", 0, "BAD_USER_INPUT"), ("alice", 9, "BAD_USER_INPUT"), ("staff", 3, "FORBIDDEN")],
)
async def test_what_is_refused(users: Users, who: str, rating: int, code: str) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    api = getattr(users, who)
    assert await api.error(POST, {"sku": sku, "rating": rating, "comment": ""}) == code


async def test_one_review_per_customer_and_only_of_a_known_product(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    await users.alice.ok(POST, {"sku": sku, "rating": 4, "comment": ""})
    again = {"sku": sku, "rating": 1, "comment": "changed my mind"}
    assert await users.alice.error(POST, again) == "ALREADY_EXISTS"
    unknown = {"sku": new_sku(), "rating": 4, "comment": ""}
    assert await users.alice.error(POST, unknown) == "NOT_FOUND"
    assert await users.alice.error(POST, {**unknown, "sku": "bad\x00"}) == "BAD_USER_INPUT"


async def test_the_rating_is_live(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    client = await acked(users.url, token("rating-viewer"))
    try:
        await client.subscribe("r", LIVE, {"sku": sku})
        assert (await client.next_data("r"))["productRating"]["reviewCount"] == 0
        posted = (await users.alice.ok(POST, {"sku": sku, "rating": 4, "comment": ""}))[
            "postReview"
        ]
        pushed = (await client.next_data("r"))["productRating"]
        assert pushed["reviewCount"] == 1 and pushed["rating"] == 4.0
        assert pushed["position"] >= posted["position"]
    finally:
        await client.ws.close()
