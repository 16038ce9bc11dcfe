"""Given events, when a command, then events or an error: the Wishlist decider, pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import wishlist
from domain.errors import AlreadyExists, Forbidden, InvalidInput, NotFound
from domain.values import Actor

NOW = datetime(2026, 12, 5, tzinfo=UTC)
ANN = Actor("ann", "customer")
W = wishlist.wishlist_id("ann")


def add(sku: str, actor: Actor = ANN) -> wishlist.AddToWishlist:
    return wishlist.AddToWishlist(sku, actor, NOW)


def remove(sku: str, actor: Actor = ANN) -> wishlist.RemoveFromWishlist:
    return wishlist.RemoveFromWishlist(sku, actor, NOW)


def given(*events: wishlist.WishlistEvent) -> wishlist.WishlistState:
    state = wishlist.initial_state
    for event in events:
        state = wishlist.evolve(state, event)
    return state


def added(sku: str) -> wishlist.WishlistItemAdded:
    return wishlist.WishlistItemAdded(W, "ann", sku, NOW)


def test_a_customer_adds_products_in_order_and_removes_one() -> None:
    assert wishlist.decide(add("A"), None) == [added("A")]
    state = given(added("A"), added("B"), added("C"))
    assert state == wishlist.Wishlist("ann", ("A", "B", "C"))
    [removed] = wishlist.decide(remove("B"), state)
    assert removed == wishlist.WishlistItemRemoved(W, "ann", "B", NOW)
    assert given(added("A"), added("B"), added("C"), removed).items == ("A", "C")  # type: ignore[union-attr]


def test_a_product_is_on_it_once_and_can_come_back_after_removal() -> None:
    with pytest.raises(AlreadyExists):
        wishlist.decide(add("A"), given(added("A")))
    gone = wishlist.WishlistItemRemoved(W, "ann", "A", NOW)
    assert wishlist.decide(add("A"), given(added("A"), gone)) == [added("A")]


def test_at_most_fifty_products() -> None:
    full = given(*(added(f"S{i}") for i in range(wishlist.MAX_ITEMS)))
    with pytest.raises(InvalidInput):
        wishlist.decide(add("ONE-MORE"), full)
    wishlist.decide(remove("S0"), full)  # removing from a full list works


@pytest.mark.parametrize(
    ("command", "state", "error"),
    [
        (remove("A"), None, NotFound),
        (remove("B"), given(added("A")), NotFound),
        (add("bad sku!"), None, InvalidInput),
        (add("x" * 65), None, InvalidInput),
        (add("A", Actor("sam", "staff")), None, Forbidden),
        (remove("A", Actor("sam", "staff")), given(added("A")), Forbidden),
        (add("A", Actor.system("x")), None, Forbidden),
    ],
)
def test_what_is_refused(
    command: wishlist.AddToWishlist | wishlist.RemoveFromWishlist,
    state: wishlist.WishlistState,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        wishlist.decide(command, state)


def test_one_ascii_stream_per_customer_whatever_their_id() -> None:
    ids = ["ann", "Ann", "ännchen", "客户-7", "a\nb"]
    streams = {wishlist.stream_id(wishlist.wishlist_id(c)) for c in ids}
    assert len(streams) == len(ids)
    assert all(s.isascii() and s.startswith("wishlist-") for s in streams)
    assert wishlist.wishlist_id("ann") == W


def test_an_added_product_must_exist_a_removed_one_need_not() -> None:
    assert wishlist.AGGREGATE.references(added("A")) == ("product-A",)
    gone = wishlist.WishlistItemRemoved(W, "ann", "A", NOW)
    assert wishlist.AGGREGATE.references(gone) == ()
    assert wishlist.AGGREGATE.subject(gone) == wishlist.stream_id(W)


def test_the_read_model_keeps_each_wishlist_in_order_and_counts_the_wishes() -> None:
    from projections.kit import fold
    from projections.wishlist import Wished, Wisher, Wishes, WishlistProjection

    bob = wishlist.wishlist_id("bob")
    tables = fold(
        WishlistProjection(),
        [
            (added("A"), 10),
            (added("B"), 11),
            (wishlist.WishlistItemAdded(bob, "bob", "A", NOW), 12),
            (wishlist.WishlistItemRemoved(W, "ann", "A", NOW), 13),
        ],
    )
    assert tables["wishlists"] == {"ann": Wisher("ann", 1, 13), "bob": Wisher("bob", 1, 12)}
    assert tables["wishlist_items"] == {
        ("ann", "B"): Wished("ann", "B", 11, 11),
        ("bob", "A"): Wished("bob", "A", 12, 12),
    }
    assert tables["product_wishes"] == {"A": Wishes("A", 1, 13), "B": Wishes("B", 1, 11)}
