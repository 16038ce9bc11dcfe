"""Ids in any spelling that parses name the same order, and only the canonical spelling is
ever stored or answered. The reproduction of the critical defect: an order paid, shipped or
cancelled by an id in upper case, braces or without hyphens used to store the raw spelling
in its events, and the `orders` (and `sales`) projection stopped for everyone."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.kit.documents import CANCEL, PAY, SHIP, place, register, stream_events
from tests.kit.server import Users, new_sku, token
from tests.kit.ws import ORDER_SUB, acked

SPELLINGS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "braces": lambda u: "{" + u + "}",
    "no-hyphens": lambda u: u.replace("-", ""),
    "upper-braces-no-hyphens": lambda u: "{" + u.replace("-", "").upper() + "}",
    "urn": lambda u: "urn:uuid:" + u,
}
ORDER_Q = "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { id status position } }"


async def assert_read_side_healthy(users: Users) -> None:
    response = await users.client.get(users.url + "/readyz")
    assert response.status_code == 200, response.text
    for name, projection in response.json()["projections"].items():
        assert projection["status"] == "running", (name, projection)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
async def test_pay_ship_and_cancel_by_any_spelling_keep_every_projection_running(
    users: Users, spelling: str
) -> None:
    spell = SPELLINGS[spelling]
    sku = new_sku()
    await register(users, sku, "2.50", 10)

    placed = await place(users.alice, [(sku, 2)])
    order_id = placed["orderId"]
    assert order_id == str(uuid.UUID(order_id))

    paid = (await users.alice.ok(PAY, {"id": spell(order_id), "amount": "5.00"}))["payOrder"]
    assert paid["orderId"] == order_id and paid["order"]["id"] == order_id
    assert paid["order"]["status"] == "PAID"
    assert {e["data"]["orderId"] for e in paid["events"]} == {order_id}
    shipped = (await users.staff.ok(SHIP, {"id": spell(order_id)}))["shipOrder"]
    assert shipped["order"]["status"] == "SHIPPED" and shipped["orderId"] == order_id

    other = (await place(users.alice, [(sku, 1)]))["orderId"]
    cancelled = (await users.alice.ok(CANCEL, {"id": spell(other), "reason": "changed my mind"}))[
        "cancelOrder"
    ]
    assert cancelled["order"]["status"] == "CANCELLED" and cancelled["orderId"] == other

    view = await users.alice.ok(ORDER_Q, {"id": spell(order_id), "at": shipped["position"]})
    assert view["order"] == {
        "id": order_id,
        "status": "SHIPPED",
        "position": view["order"]["position"],
    }
    stored = await stream_events(users, "order-" + spell(order_id))
    assert [e["type"] for e in stored] == ["OrderPlaced", "PaymentProcessed", "OrderShipped"]
    assert {e["data"]["orderId"] for e in stored} == {order_id}
    assert {e["streamId"] for e in stored} == {f"order-{order_id}"}
    stock = await stream_events(users, f"product-{sku}")
    assert {e["data"]["orderId"] for e in stock if e["data"].get("orderId")} == {order_id, other}

    await assert_read_side_healthy(users)


async def test_a_live_order_view_follows_any_spelling(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    order_id = (await place(users.alice, [(sku, 1)]))["orderId"]
    client = await acked(users.url, users.alice.headers["Authorization"].split()[1])
    try:
        await client.subscribe("o", ORDER_SUB, {"id": order_id.upper()})
        assert (await client.next_data("o"))["order"]["id"] == order_id
        await users.alice.ok(PAY, {"id": "{" + order_id + "}", "amount": "1.00"})
        pushed = (await client.next_data("o"))["order"]
        assert pushed == {**pushed, "id": order_id, "status": "PAID"}
    finally:
        await client.ws.close()


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-uuid",
        "",
        "{" + "0" * 32,
        "0" * 31,
        "g" * 32,
        "\u0661" * 32,  # Arabic-Indic digits: uuid.UUID would read these
        "1234_678-1234-1234-1234-123456789abc",
        " " + str(uuid.UUID(int=1)),
        str(uuid.UUID(int=1)) + "\x00",
        "0" * 10_000,
    ],
)
async def test_an_id_that_does_not_parse_is_bad_input(users: Users, bad: str) -> None:
    assert await users.alice.error(PAY, {"id": bad, "amount": "1.00"}) == "BAD_USER_INPUT"
    assert await users.staff.error(SHIP, {"id": bad}) == "BAD_USER_INPUT"
    assert await users.alice.error(CANCEL, {"id": bad, "reason": "x"}) == "BAD_USER_INPUT"
    assert await users.alice.error(ORDER_Q, {"id": bad}) == "BAD_USER_INPUT"
    async with httpx.AsyncClient() as client:
        response = await client.post(
            users.url + "/graphql",
            json={"query": "query($s: String!) { events(streamId: $s) { position } }",
                  "variables": {"s": "order-" + bad}},
            headers={"Authorization": f"Bearer {token('ids-staff', 'staff')}"},
        )  # fmt: skip
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
