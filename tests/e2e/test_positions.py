"""Positions on views (see the contract): a view's position is its read model's position when
it was read, so `view.position >= command.position` means "my write is in this view", for
queries, mutation payloads and live views; and a live view is pushed only when it changed."""

from __future__ import annotations

import asyncio

from tests.kit.documents import RESTOCK, place, register
from tests.kit.server import Users, new_sku
from tests.kit.ws import MY_ORDERS, ORDER_SUB, PRODUCT_SUB, acked

PRODUCT_Q = (
    "query($sku: String!, $at: Position) { product(sku: $sku, atLeast: $at) { onHand position } }"
)
EVERY_ORDER = "subscription { orders { id status position } }"


def bearer(api: object) -> str:
    return api.headers["Authorization"].split()[1]  # type: ignore[attr-defined, no-any-return]


async def test_a_view_carries_its_read_models_position_not_its_own_last_change(
    users: Users,
) -> None:
    quiet, busy = new_sku(), new_sku()
    await register(users, quiet, "1.00", 5)
    await register(users, busy, "1.00", 5)
    restocked = (await users.staff.ok(RESTOCK, {"sku": busy, "q": 1}))["restockProduct"]
    view = (await users.alice.ok(PRODUCT_Q, {"sku": quiet, "at": restocked["position"]}))["product"]
    assert view["onHand"] == 5 and view["position"] >= restocked["position"]


async def test_the_payload_of_placeorder_reflects_the_whole_command(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 50)
    for _ in range(5):
        placed = await place(users.alice, [(sku, 1)])
        # the order's own event comes before the stock reservation, the command's last
        assert placed["events"][-1]["streamId"] == f"product-{sku}"
        assert placed["order"]["position"] >= placed["position"]


async def test_read_your_writes_holds_on_subscriptions(users: Users) -> None:
    """After placeOrder returns P, the order's first pushed view has position >= P: on the
    customer's feed subscribed before, and on the order's own view subscribed after."""
    sku = new_sku()
    await register(users, sku, "1.00", 1000)
    feed = await acked(users.url, bearer(users.alice))
    await feed.subscribe("mine", MY_ORDERS)
    await asyncio.sleep(0.2)  # the feed starts where the read model is now

    async def buy() -> tuple[str, int]:
        placed = await place(users.alice, [(sku, 1)])
        return placed["orderId"], placed["position"]

    bought = dict(await asyncio.gather(*(buy() for _ in range(12))))
    first_seen: dict[str, int] = {}
    positions: list[int] = []
    while len(first_seen) < len(bought):
        try:
            view = (await feed.next_data("mine"))["myOrders"]
        except TimeoutError:
            raise AssertionError((first_seen, bought, positions)) from None
        positions.append(view["position"])
        first_seen.setdefault(view["id"], view["position"])
    assert positions == sorted(set(positions)), "strictly increasing"
    for order_id, position in bought.items():
        assert first_seen[order_id] >= position, (order_id, first_seen[order_id], position)

        own = await acked(users.url, bearer(users.alice))
        await own.subscribe("o", ORDER_SUB, {"id": order_id})
        assert (await own.next_data("o"))["order"]["position"] >= position
        await own.ws.close()
    await feed.ws.close()


async def test_a_live_view_is_pushed_only_when_its_content_changed(users: Users) -> None:
    watched, other = new_sku(), new_sku()
    await register(users, watched, "1.00", 10)
    await register(users, other, "1.00", 10)
    client = await acked(users.url, bearer(users.alice))
    await client.subscribe("p", PRODUCT_SUB, {"sku": watched})
    first = (await client.next_data("p"))["product"]
    for _ in range(5):  # the products read model moves on; the watched view does not change
        await users.staff.ok(RESTOCK, {"sku": other, "q": 1})
    changed = (await users.staff.ok(RESTOCK, {"sku": watched, "q": 2}))["restockProduct"]
    second = (await client.next_data("p"))["product"]
    assert (first["onHand"], second["onHand"]) == (10, 12)
    assert second["position"] >= changed["position"] > first["position"]
    await client.ws.close()


async def test_staff_watch_every_order_and_customers_may_not(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 10)
    staff = await acked(users.url, bearer(users.staff))
    await staff.subscribe("all", EVERY_ORDER)
    await asyncio.sleep(0.2)
    placed = await place(users.bob, [(sku, 1)])
    while True:
        view = (await staff.next_data("all"))["orders"]
        if view["id"] == placed["orderId"]:
            break
    assert view["status"] == "PLACED" and view["position"] >= placed["position"]
    await staff.ws.close()

    customer = await acked(users.url, bearer(users.alice))
    await customer.subscribe("all", EVERY_ORDER)
    message = await customer.recv()
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    await customer.ws.close()
