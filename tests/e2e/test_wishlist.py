"""The wishlist end to end, against a running server: the second worked example of
docs/extending.md, a read model on the kit with a live view joined to the products."""

from __future__ import annotations

import asyncio

import pytest

from tests.kit.documents import register
from tests.kit.server import Users, new_sku, token
from tests.kit.ws import acked

VIEW = "id customerId position items { sku name unitPrice available position }"
ADD = f"mutation($sku: String!) {{ addToWishlist(sku: $sku) {{ position wishlist {{ {VIEW} }} }} }}"
REMOVE = f"mutation($sku: String!) {{ removeFromWishlist(sku: $sku) {{ position wishlist {{ {VIEW} }} }} }}"
MINE = f"query($at: Position) {{ myWishlist(atLeast: $at) {{ {VIEW} }} }}"
MOST = "query($n: Int!, $at: Position) { mostWished(first: $n, atLeast: $at) { sku wishes } }"
LIVE = f"subscription {{ myWishlist {{ {VIEW} }} }}"
RESTOCK = (
    "mutation($sku: String!, $q: Int!) { restockProduct(sku: $sku, quantity: $q) { position } }"
)


async def test_a_customer_wishes_products_in_order_and_removes_one(users: Users) -> None:
    a, b = new_sku(), new_sku()
    await register(users, a, "2.50", 4)
    await register(users, b, "9.00", 1)
    ann = users.customer()
    assert (await ann.ok(MINE))["myWishlist"]["items"] == []  # none yet: empty, not an error
    await ann.ok(ADD, {"sku": b})
    added = (await ann.ok(ADD, {"sku": a}))["addToWishlist"]
    wishlist = added["wishlist"]  # read your own write
    assert [i["sku"] for i in wishlist["items"]] == [b, a]  # in the order added
    assert wishlist["items"][1] == {
        "sku": a, "name": "Widget", "unitPrice": "2.50", "available": 4,
        "position": wishlist["items"][1]["position"],
    }  # fmt: skip
    assert wishlist["position"] >= added["position"] and wishlist["id"] == wishlist["customerId"]
    removed = (await ann.ok(REMOVE, {"sku": b}))["removeFromWishlist"]
    assert [i["sku"] for i in removed["wishlist"]["items"]] == [a]
    mine = (await ann.ok(MINE, {"at": removed["position"]}))["myWishlist"]
    assert [i["sku"] for i in mine["items"]] == [a]
    assert (await users.customer().ok(MINE))["myWishlist"]["items"] == []  # not someone else's


async def test_what_is_refused(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 1)
    ann = users.customer()
    await ann.ok(ADD, {"sku": sku})
    assert await ann.error(ADD, {"sku": sku}) == "ALREADY_EXISTS"
    assert await ann.error(ADD, {"sku": new_sku()}) == "NOT_FOUND"
    assert await ann.error(ADD, {"sku": "bad sku\x00"}) == "BAD_USER_INPUT"
    assert await ann.error(REMOVE, {"sku": new_sku()}) == "NOT_FOUND"
    assert await users.staff.error(ADD, {"sku": sku}) == "FORBIDDEN"
    assert await users.staff.error(ADD, {"sku": "bad sku\x00"}) == "FORBIDDEN"  # role first
    assert await users.staff.error(REMOVE, {"sku": sku}) == "FORBIDDEN"
    assert await users.anonymous.error(ADD, {"sku": sku}) == "UNAUTHENTICATED"
    assert await users.anonymous.error(MINE) == "UNAUTHENTICATED"
    assert await ann.error(MOST, {"n": 5}) == "FORBIDDEN"
    assert await users.staff.error(MOST, {"n": -1}) == "BAD_USER_INPUT"
    assert await users.staff.error(MOST, {"n": 101}) == "BAD_USER_INPUT"
    mine = (await ann.ok(MINE))["myWishlist"]
    assert [i["sku"] for i in mine["items"]] == [sku]  # nothing refused changed it


async def test_at_most_fifty_products(users: Users) -> None:
    skus = [new_sku() for _ in range(51)]
    for sku in skus:
        await register(users, sku, "1.00", 1)
    ann = users.customer()
    for sku in skus[:50]:
        await ann.ok(ADD, {"sku": sku})
    assert await ann.error(ADD, {"sku": skus[50]}) == "BAD_USER_INPUT"
    await ann.ok(REMOVE, {"sku": skus[0]})
    assert len((await ann.ok(ADD, {"sku": skus[50]}))["addToWishlist"]["wishlist"]["items"]) == 50


async def test_staff_see_the_most_wished_products(users: Users) -> None:
    hot, warm = new_sku(), new_sku()
    for sku in (hot, warm):
        await register(users, sku, "1.00", 1)
    last = 0
    for n in range(3):
        customer = users.customer()
        last = (await customer.ok(ADD, {"sku": hot}))["addToWishlist"]["position"]
        if n == 0:
            last = (await customer.ok(ADD, {"sku": warm}))["addToWishlist"]["position"]
    found = (await users.staff.ok(MOST, {"n": 100, "at": last}))["mostWished"]
    wishes = {w["sku"]: w["wishes"] for w in found}
    assert wishes[hot] == 3 and wishes[warm] == 1
    assert [w["wishes"] for w in found] == sorted((w["wishes"] for w in found), reverse=True)


async def test_the_wishlist_is_live_and_moves_with_its_products_stock(users: Users) -> None:
    wished, other = new_sku(), new_sku()
    await register(users, wished, "3.00", 5)
    await register(users, other, "3.00", 5)
    name = f"wisher-{new_sku()}"
    ann = users.customer(name)
    client = await acked(users.url, token(name))
    try:
        await client.subscribe("w", LIVE)
        assert (await client.next_data("w"))["myWishlist"]["items"] == []  # the empty first view
        await ann.ok(ADD, {"sku": wished})
        view = (await client.next_data("w"))["myWishlist"]
        assert [(i["sku"], i["available"]) for i in view["items"]] == [(wished, 5)]
        await users.staff.ok(RESTOCK, {"sku": other, "q": 1})  # not wished: nothing to push
        await users.staff.ok(RESTOCK, {"sku": wished, "q": 2})
        moved = (await client.next_data("w"))["myWishlist"]
        assert [(i["sku"], i["available"]) for i in moved["items"]] == [(wished, 7)]
        assert moved["position"] >= view["position"]
        await users.bob.ok(ADD, {"sku": wished})  # someone else's wishlist: not pushed here
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await client.next_data("w", 1)
        await ann.ok(REMOVE, {"sku": wished})
        assert (await client.next_data("w"))["myWishlist"]["items"] == []
    finally:
        await client.ws.close()
