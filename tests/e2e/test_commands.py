"""Every mutation of the contract through HTTP against a running server and real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.kit.documents import (
    CANCEL,
    EVENTS,
    PAY,
    PLACE,
    REGISTER,
    RESTOCK,
    SHIP,
    place,
    register,
    stream_events,
)
from tests.kit.server import Api, Users, new_sku


async def test_register_and_restock_a_product(users: Users) -> None:
    sku = new_sku()
    registered = await register(users, sku, "19.9", 5)
    assert registered["sku"] == sku
    assert registered["product"] == {
        "sku": sku,
        "name": "Widget",
        "unitPrice": "19.90",
        "onHand": 5,
        "reserved": 0,
        "available": 5,
        "position": registered["position"],
        "updatedAt": registered["product"]["updatedAt"],
    }
    [event] = registered["events"]
    assert event["type"] == "ProductRegistered" and event["streamId"] == f"product-{sku}"
    assert event["streamVersion"] == 1 and event["position"] == registered["position"]
    assert event["data"]["unitPrice"] == "19.90"
    assert event["metadata"]["actor"]["role"] == "staff"
    assert {"correlationId", "causationId"} <= event["metadata"].keys()

    restocked = (await users.staff.ok(RESTOCK, {"sku": sku, "q": 7}))["restockProduct"]
    assert restocked["position"] > registered["position"]
    assert restocked["product"]["onHand"] == 12 and restocked["product"]["available"] == 12
    assert restocked["events"][0]["type"] == "InventoryUpdated"
    assert restocked["events"][0]["data"]["reason"] == "restock"


async def test_order_lifecycle_place_pay_ship(users: Users) -> None:
    a, b = new_sku(), new_sku()
    await register(users, a, "2.50", 10)
    await register(users, b, "10.00", 3)
    placed = await place(users.alice, [(a, 4), (b, 1)])
    order = placed["order"]
    assert order["status"] == "PLACED" and order["version"] == 1
    assert order["total"] == "20.00" and order["amountPaid"] == "0.00"
    assert [(x["sku"], x["quantity"], x["unitPrice"], x["lineTotal"]) for x in order["lines"]] == [
        (a, 4, "2.50", "10.00"),
        (b, 1, "10.00", "10.00"),
    ]
    types = sorted(e["type"] for e in placed["events"])
    assert types == ["InventoryUpdated", "InventoryUpdated", "OrderPlaced"]
    assert placed["position"] == max(e["position"] for e in placed["events"])

    paid = (await users.alice.ok(PAY, {"id": placed["orderId"], "amount": "20.00"}))["payOrder"]
    assert paid["order"]["status"] == "PAID" and paid["order"]["amountPaid"] == "20.00"
    assert paid["order"]["version"] == 2

    shipped = (await users.staff.ok(SHIP, {"id": placed["orderId"]}))["shipOrder"]
    assert shipped["order"]["status"] == "SHIPPED" and shipped["order"]["version"] == 3
    stock = [e["data"] for e in await stream_events(users, f"product-{a}")]
    assert [(d["reason"], d["onHand"], d["reserved"]) for d in stock[1:]] == [
        ("reservation", 10, 4),
        ("shipment", 6, 0),
    ]


async def test_cancel_releases_stock_and_refunds_what_was_paid(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "5.00", 10)
    placed = await place(users.alice, [(sku, 3)])
    await users.alice.ok(PAY, {"id": placed["orderId"], "amount": "15.00"})
    cancelled = await users.alice.ok(CANCEL, {"id": placed["orderId"], "reason": "changed mind"})
    order = cancelled["cancelOrder"]["order"]
    assert order["status"] == "CANCELLED" and order["amountPaid"] == "0.00"
    types = sorted(e["type"] for e in cancelled["cancelOrder"]["events"])
    assert types == ["InventoryUpdated", "OrderCancelled", "PaymentRefunded"]
    last = (await stream_events(users, f"product-{sku}"))[-1]["data"]
    assert (last["reason"], last["onHand"], last["reserved"]) == ("release", 10, 0)

    unpaid = await place(users.bob, [(sku, 2)])
    cancelled = await users.staff.ok(CANCEL, {"id": unpaid["orderId"], "reason": "fraud check"})
    assert [e["type"] for e in cancelled["cancelOrder"]["events"]].count("PaymentRefunded") == 0


async def test_place_order_idempotency_key_returns_the_first_result(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    first = await place(users.alice, [(sku, 5)], key="checkout-1")
    again = await place(users.alice, [(sku, 5)], key="checkout-1")  # stock is 0 now: still ok
    assert again["orderId"] == first["orderId"] and again["position"] == first["position"]
    assert [e["eventId"] for e in again["events"]] == [e["eventId"] for e in first["events"]]
    assert len(await stream_events(users, f"product-{sku}")) == 2
    # The same key from another customer is another command.
    assert (
        await users.bob.error(PLACE, {"lines": [{"sku": sku, "quantity": 1}], "key": "checkout-1"})
        == "INSUFFICIENT_STOCK"
    )


async def test_pay_order_idempotency_key_returns_the_first_result(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "3.00", 5)
    placed = await place(users.alice, [(sku, 1)])
    variables = {"id": placed["orderId"], "amount": "3.00", "key": "pay-1"}
    first = (await users.alice.ok(PAY, variables))["payOrder"]
    again = (await users.alice.ok(PAY, variables))["payOrder"]
    assert again["position"] == first["position"] and again["order"]["status"] == "PAID"
    assert len(await stream_events(users, f"order-{placed['orderId']}")) == 2
    assert await users.alice.error(PAY, {**variables, "key": None}) == "INVALID_STATE"


async def test_concurrent_idempotent_retries_append_once(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 100)
    results = await asyncio.gather(*(place(users.alice, [(sku, 1)], key="burst") for _ in range(8)))
    assert len({r["orderId"] for r in results}) == 1
    assert len(await stream_events(users, f"product-{sku}")) == 2


async def test_sixteen_customers_buying_the_last_fifty_units(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "9.99", 50)
    customers = [users.customer() for _ in range(16)]
    variables = {"lines": [{"sku": sku, "quantity": 10}]}
    bodies = await asyncio.gather(*(c.raw(PLACE, variables) for c in customers))
    succeeded = [b for b in bodies if not b.get("errors")]
    failed = [b["errors"][0]["extensions"]["code"] for b in bodies if b.get("errors")]
    assert len(succeeded) == 5
    assert failed == ["INSUFFICIENT_STOCK"] * 11
    last = (await stream_events(users, f"product-{sku}"))[-1]["data"]
    assert last["onHand"] - last["reserved"] == 0 and last["reserved"] == 50


# Errors --------------------------------------------------------------------------------------


async def test_authentication_is_required_and_checked(users: Users) -> None:
    variables = {"sku": new_sku(), "name": "x", "price": "1.00", "stock": 1}
    assert await users.anonymous.error(REGISTER, variables) == "UNAUTHENTICATED"
    for bad in ["garbage", "Bearer", "Bearer not.a.jwt", "Basic abc"]:
        api = Api(users.client, users.url, None)
        api.headers = {"Authorization": bad}
        assert await api.error(REGISTER, variables) == "UNAUTHENTICATED"
    from application.auth import mint_token
    from tests.kit.server import SECRET

    for forged in [
        mint_token("another-secret-" + "y" * 32, "mallory", "staff"),
        mint_token(SECRET, "mallory", "staff", ttl_seconds=-10),  # expired
    ]:
        assert (
            await Api(users.client, users.url, forged).error(REGISTER, variables)
            == "UNAUTHENTICATED"
        )


async def test_roles_and_ownership_are_enforced(users: Users) -> None:
    sku = new_sku()
    assert (
        await users.alice.error(REGISTER, {"sku": sku, "name": "x", "price": "1.00", "stock": 1})
        == "FORBIDDEN"
    )
    await register(users, sku, "1.00", 10)
    assert await users.alice.error(RESTOCK, {"sku": sku, "q": 1}) == "FORBIDDEN"
    placed = await place(users.alice, [(sku, 1)])
    assert await users.bob.error(PAY, {"id": placed["orderId"], "amount": "1.00"}) == "FORBIDDEN"
    assert await users.bob.error(CANCEL, {"id": placed["orderId"], "reason": "x"}) == "FORBIDDEN"
    await users.alice.ok(PAY, {"id": placed["orderId"], "amount": "1.00"})
    assert await users.alice.error(SHIP, {"id": placed["orderId"]}) == "FORBIDDEN"


async def test_business_rule_errors(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "4.00", 2)
    assert (
        await users.staff.error(
            REGISTER, {"sku": sku, "name": "again", "price": "1.00", "stock": 0}
        )
        == "ALREADY_EXISTS"
    )
    assert (
        await users.alice.error(PLACE, {"lines": [{"sku": sku, "quantity": 3}]})
        == "INSUFFICIENT_STOCK"
    )
    assert (
        await users.alice.error(PLACE, {"lines": [{"sku": new_sku(), "quantity": 1}]})
        == "NOT_FOUND"
    )
    assert await users.staff.error(RESTOCK, {"sku": new_sku(), "q": 1}) == "NOT_FOUND"
    missing = str(uuid.uuid4())
    assert await users.alice.error(PAY, {"id": missing, "amount": "1.00"}) == "NOT_FOUND"
    assert await users.staff.error(SHIP, {"id": missing}) == "NOT_FOUND"
    assert await users.alice.error(PAY, {"id": "not-a-uuid", "amount": "1.00"}) == "BAD_USER_INPUT"
    assert await users.staff.error(SHIP, {"id": "not-a-uuid"}) == "BAD_USER_INPUT"

    placed = await place(users.alice, [(sku, 1)])
    order_id = placed["orderId"]
    assert await users.staff.error(SHIP, {"id": order_id}) == "INVALID_STATE"  # not paid
    assert await users.alice.error(PAY, {"id": order_id, "amount": "3.99"}) == "BAD_USER_INPUT"
    await users.alice.ok(PAY, {"id": order_id, "amount": "4.00"})
    assert await users.alice.error(PAY, {"id": order_id, "amount": "4.00"}) == "INVALID_STATE"
    await users.staff.ok(SHIP, {"id": order_id})
    assert await users.alice.error(CANCEL, {"id": order_id, "reason": "late"}) == "INVALID_STATE"
    assert await users.staff.error(SHIP, {"id": order_id}) == "INVALID_STATE"


@pytest.mark.parametrize(
    "price", ["abc", "NaN", "1e999999", "-1", "0", "1.001", "", "Infinity", "  "]
)
async def test_bad_prices_are_refused_and_append_nothing(users: Users, price: str) -> None:
    sku = new_sku()
    variables = {"sku": sku, "name": "x", "price": price, "stock": 1}
    assert await users.staff.error(REGISTER, variables) == "BAD_USER_INPUT"
    literal = REGISTER.replace(", $price: Decimal!", "").replace("$price", f'"{price}"')
    del variables["price"]
    assert await users.staff.error(literal, variables) == "BAD_USER_INPUT"
    assert await stream_events(users, f"product-{sku}") == []


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"sku": "", "name": "x", "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "a" * 65, "name": "x", "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "has space", "name": "x", "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "ünï", "name": "x", "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "OK-1", "name": "", "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "OK-1", "name": "   ", "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "OK-1", "name": "n" * 201, "price": "1.00", "stock": 1}, "BAD_USER_INPUT"),
        ({"sku": "OK-1", "name": "x", "price": "1.00", "stock": -1}, "BAD_USER_INPUT"),
        ({"sku": "OK-1", "name": "x", "price": "1.00", "stock": 2**40}, "BAD_USER_INPUT"),
        ({"sku": "OK-1", "name": "x", "price": 1.5, "stock": "1"}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_product_input_is_refused(
    users: Users, variables: dict[str, Any], code: str
) -> None:
    assert await users.staff.error(REGISTER, variables) == code


async def test_bad_order_input_is_refused_and_appends_nothing(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 1000)
    bad_lines: list[list[dict[str, Any]]] = [
        [],
        [{"sku": sku, "quantity": 0}],
        [{"sku": sku, "quantity": -3}],
        [{"sku": sku, "quantity": 10_001}],
        [{"sku": sku, "quantity": 2**31}],
        [{"sku": sku, "quantity": 1.5}],
        [{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 2}],
        [{"sku": f"S{i}", "quantity": 1} for i in range(101)],
        [{"sku": "bad sku", "quantity": 1}],
    ]
    for lines in bad_lines:
        assert await users.alice.error(PLACE, {"lines": lines}) == "BAD_USER_INPUT", lines
    assert (
        await users.alice.error(PLACE, {"lines": [{"sku": sku, "quantity": 1}], "key": "x" * 201})
        == "BAD_USER_INPUT"
    )
    placed = await place(users.alice, [(sku, 1)])
    for amount in ["abc", "NaN", "-1", "1.001", "1e999999"]:
        assert (
            await users.alice.error(PAY, {"id": placed["orderId"], "amount": amount})
            == "BAD_USER_INPUT"
        )
    for reason in ["", "   ", "r" * 501]:
        assert (
            await users.alice.error(CANCEL, {"id": placed["orderId"], "reason": reason})
            == "BAD_USER_INPUT"
        )
    assert len(await stream_events(users, f"product-{sku}")) == 2
    assert len(await stream_events(users, f"order-{placed['orderId']}")) == 1


async def test_malformed_requests_never_get_a_500(users: Users) -> None:
    url = users.url + "/graphql"
    headers = users.staff.headers
    cases: list[tuple[str, Any]] = [
        ("content", b"{not json"),
        ("content", b"[]"),
        ("content", b'{"query": 42}'),
        ("content", b'{"query": "{ events { position } }", "variables": [1]}'),
        ("content", b"\xff\xfe"),
        ("json", {"query": "{"}),
        ("json", {"query": "{ nope }"}),
        ("json", {"query": "subscription { x }"}),
        ("json", {"query": "{ events { position } }", "operationName": "Missing"}),
        ("json", {"query": "{ " + "a: __typename " * 100 + "}"}),
        ("json", {"query": "{ " + "__typename " * 3000 + "}"}),
    ]
    for kind, body in cases:
        response = await users.client.post(url, headers=headers, **{kind: body})
        assert response.status_code in (200, 400), (body, response.status_code, response.text)
        assert response.json()["errors"][0]["extensions"]["code"], response.text
    huge = await users.client.post(url, headers=headers, content=b"x" * (300 * 1024))
    assert huge.status_code == 413
    deep = "{ events { " + "data " + "} }"
    assert (await users.client.post(url, headers=headers, json={"query": deep})).status_code == 200
    get_mutation = await users.client.get(
        url, headers=headers, params={"query": 'mutation { shipOrder(orderId: "x") { position } }'}
    )
    assert get_mutation.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_events_query_reads_the_log_for_staff_only(users: Users) -> None:
    sku = new_sku()
    await register(users, sku)
    await users.staff.ok(RESTOCK, {"sku": sku, "q": 1})
    events = await stream_events(users, f"product-{sku}")
    assert [e["streamVersion"] for e in events] == [1, 2]
    assert events[0]["schemaVersion"] == 1
    assert await users.alice.error(EVENTS, {"after": 0, "first": 10, "stream": None}) == "FORBIDDEN"
    assert (
        await users.staff.error(EVENTS, {"after": 0, "first": -1, "stream": None})
        == "BAD_USER_INPUT"
    )
    assert (
        await users.staff.error(EVENTS, {"after": -5, "first": 1, "stream": None})
        == "BAD_USER_INPUT"
    )


async def test_a_long_product_stream_is_loaded_from_a_snapshot(
    users: Users, server_database_url: str
) -> None:
    import asyncpg

    sku = new_sku()
    await register(users, sku, "1.00", 60)
    for _ in range(55):
        await place(users.alice, [(sku, 1)])
    conn = await asyncpg.connect(server_database_url)
    try:
        snapshot = await conn.fetchrow(
            "SELECT stream_version, state FROM eventgraph.snapshots WHERE stream_id = $1",
            f"product-{sku}",
        )
    finally:
        await conn.close()
    assert snapshot is not None and snapshot["stream_version"] >= 25
    # Decisions after the snapshot still see every unit: 5 left, 6 is too many.
    assert (
        await users.alice.error(PLACE, {"lines": [{"sku": sku, "quantity": 6}]})
        == "INSUFFICIENT_STOCK"
    )
    last = await place(users.alice, [(sku, 5)])
    data = next(e["data"] for e in last["events"] if e["type"] == "InventoryUpdated")
    assert (data["onHand"], data["reserved"]) == (60, 60)
