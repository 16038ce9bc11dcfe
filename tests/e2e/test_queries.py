"""Every query of the contract, against the read models of a running server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from projections import all_projections
from tests.kit.documents import CANCEL, PAY, SHIP, place, register
from tests.kit.server import Users, new_sku

PRODUCT_Q = """query($sku: String!, $at: Position) {
  product(sku: $sku, atLeast: $at) { sku name unitPrice onHand reserved available position updatedAt } }"""
PRODUCTS_Q = """query($first: Int!, $after: String, $at: Position) {
  products(first: $first, after: $after, atLeast: $at) {
    edges { cursor node { sku available position } } pageInfo { hasNextPage endCursor } } }"""
ORDER_Q = """query($id: ID!, $at: Position) {
  order(id: $id, atLeast: $at) { id customerId status total amountPaid version position
    lines { sku quantity unitPrice lineTotal } } }"""
ORDERS_Q = """query($status: OrderStatus, $customer: String, $first: Int!, $after: String, $at: Position) {
  orders(status: $status, customerId: $customer, first: $first, after: $after, atLeast: $at) {
    edges { cursor node { id customerId status placedAt } } pageInfo { hasNextPage endCursor } } }"""
DASHBOARD_Q = """query($at: Position, $limit: Int!) {
  salesDashboard(atLeast: $at) { ordersPlaced ordersPaid ordersShipped ordersCancelled revenue
    position topProducts(limit: $limit) { sku unitsSold revenue } } }"""


async def test_product_query_reads_the_view_at_least_at_a_position(users: Users) -> None:
    sku = new_sku()
    registered = await register(users, sku, "3.50", 8)
    placed = await place(users.alice, [(sku, 3)])
    data = await users.bob.ok(PRODUCT_Q, {"sku": sku, "at": placed["position"]})
    product = data["product"]
    assert (product["onHand"], product["reserved"], product["available"]) == (8, 3, 5)
    assert (
        product["unitPrice"] == "3.50"
        and product["position"] >= placed["position"] > registered["position"]
    )
    assert (await users.bob.ok(PRODUCT_Q, {"sku": new_sku()}))["product"] is None
    assert await users.bob.error(PRODUCT_Q, {"sku": "bad sku"}) == "BAD_USER_INPUT"
    assert await users.anonymous.error(PRODUCT_Q, {"sku": sku}) == "UNAUTHENTICATED"


async def test_at_least_beyond_the_log_times_out(users: Users) -> None:
    assert await users.alice.error(PRODUCT_Q, {"sku": new_sku(), "at": 10**12}) == "TIMEOUT"
    assert await users.alice.error(PRODUCT_Q, {"sku": new_sku(), "at": -1}) == "BAD_USER_INPUT"
    assert await users.alice.error(PRODUCT_Q, {"sku": new_sku(), "at": 2**60}) == "BAD_USER_INPUT"


async def test_products_paginate_by_sku_with_opaque_cursors(users: Users) -> None:
    prefix = f"PAGE-{uuid.uuid4().hex[:6]}-"
    last = None
    for i in range(5):
        last = await register(users, f"{prefix}{i}")
    assert last is not None
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        data = await users.alice.ok(
            PRODUCTS_Q, {"first": 2, "after": after, "at": last["position"]}
        )
        connection = data["products"]
        seen += [e["node"]["sku"] for e in connection["edges"]]
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            assert connection["pageInfo"]["endCursor"] == (
                connection["edges"][-1]["cursor"] if connection["edges"] else None
            )
            break
        after = connection["pageInfo"]["endCursor"]
        assert pages < 10_000
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert [s for s in seen if s.startswith(prefix)] == [f"{prefix}{i}" for i in range(5)]

    empty = (await users.alice.ok(PRODUCTS_Q, {"first": 0}))["products"]
    assert empty["edges"] == [] and empty["pageInfo"]["endCursor"] is None
    for bad in [
        {"first": -1},
        {"first": 101},
        {"first": 5, "after": "forged"},
        {"first": 5, "after": after[:-2] + ("AA" if not after.endswith("AA") else "BB")},
    ]:
        assert await users.alice.error(PRODUCTS_Q, bad) == "BAD_USER_INPUT", bad


async def test_order_query_for_its_customer_and_staff_only(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "2.00", 10)
    placed = await place(users.alice, [(sku, 2)])
    variables = {"id": placed["orderId"], "at": placed["position"]}
    order = (await users.alice.ok(ORDER_Q, variables))["order"]
    assert order["status"] == "PLACED" and order["total"] == "4.00" and order["version"] == 1
    assert order["lines"] == [{"sku": sku, "quantity": 2, "unitPrice": "2.00", "lineTotal": "4.00"}]
    assert (await users.staff.ok(ORDER_Q, variables))["order"]["id"] == placed["orderId"]
    assert await users.bob.error(ORDER_Q, variables) == "FORBIDDEN"
    assert (await users.alice.ok(ORDER_Q, {"id": str(uuid.uuid4())}))["order"] is None

    paid = (await users.alice.ok(PAY, {"id": placed["orderId"], "amount": "4.00"}))["payOrder"]
    order = (await users.alice.ok(ORDER_Q, {"id": placed["orderId"], "at": paid["position"]}))[
        "order"
    ]
    assert (order["status"], order["amountPaid"], order["version"]) == ("PAID", "4.00", 2)
    assert order["position"] == paid["position"]


async def test_orders_newest_first_own_only_with_filters_and_pages(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 100)
    customer = users.customer()
    ids = [(await place(customer, [(sku, 1)]))["orderId"] for _ in range(5)]
    paid = (await customer.ok(PAY, {"id": ids[1], "amount": "1.00"}))["payOrder"]
    await place(users.bob, [(sku, 1)])

    got: list[dict[str, Any]] = []
    after = None
    while True:
        data = await customer.ok(ORDERS_Q, {"first": 2, "after": after, "at": paid["position"]})
        got += [e["node"] for e in data["orders"]["edges"]]
        if not data["orders"]["pageInfo"]["hasNextPage"]:
            break
        after = data["orders"]["pageInfo"]["endCursor"]
    assert [o["id"] for o in got] == list(reversed(ids))
    assert {o["customerId"] for o in got} == {got[0]["customerId"]}
    placed_at = [o["placedAt"] for o in got]
    assert placed_at == sorted(placed_at, reverse=True)

    only_paid = await customer.ok(ORDERS_Q, {"status": "PAID", "first": 10})
    assert [e["node"]["id"] for e in only_paid["orders"]["edges"]] == [ids[1]]
    other = got[0]["customerId"] + "-other"
    assert await customer.error(ORDERS_Q, {"customer": other, "first": 10}) == "FORBIDDEN"
    mine = await customer.ok(ORDERS_Q, {"customer": got[0]["customerId"], "first": 10})
    assert len(mine["orders"]["edges"]) == 5
    as_staff = await users.staff.ok(ORDERS_Q, {"customer": got[0]["customerId"], "first": 100})
    assert [e["node"]["id"] for e in as_staff["orders"]["edges"]] == list(reversed(ids))
    everyone = await users.staff.ok(ORDERS_Q, {"first": 100})
    assert len({e["node"]["customerId"] for e in everyone["orders"]["edges"]}) > 1
    assert await customer.error(ORDERS_Q, {"first": 5, "after": "x" * 30}) == "BAD_USER_INPUT"
    assert await customer.error(ORDERS_Q, {"first": 1000}) == "BAD_USER_INPUT"


async def test_sales_dashboard_counts_revenue_and_best_sellers(users: Users) -> None:
    before = (await users.staff.ok(DASHBOARD_Q, {"limit": 5}))["salesDashboard"]
    best, other = new_sku(), new_sku()
    await register(users, best, "10.00", 100_000)
    await register(users, other, "1.00", 100)
    big = await place(users.alice, [(best, 9_000), (other, 1)])
    paid = (await users.alice.ok(PAY, {"id": big["orderId"], "amount": "90001.00"}))["payOrder"]
    await users.staff.ok(SHIP, {"id": big["orderId"]})
    cancelled_order = await place(users.bob, [(best, 10)])
    await users.bob.ok(PAY, {"id": cancelled_order["orderId"], "amount": "100.00"})
    last = (await users.bob.ok(CANCEL, {"id": cancelled_order["orderId"], "reason": "no"}))[
        "cancelOrder"
    ]

    after = (await users.staff.ok(DASHBOARD_Q, {"at": last["position"], "limit": 5}))[
        "salesDashboard"
    ]
    delta = {
        k: after[k] - before[k]
        for k in ("ordersPlaced", "ordersPaid", "ordersShipped", "ordersCancelled")
    }
    assert delta == {"ordersPlaced": 2, "ordersPaid": 2, "ordersShipped": 1, "ordersCancelled": 1}
    from decimal import Decimal

    assert Decimal(after["revenue"]) - Decimal(before["revenue"]) == Decimal("90001.00")
    assert after["position"] >= last["position"] > paid["position"]
    assert after["topProducts"][0] == {"sku": best, "unitsSold": 9_000, "revenue": "90000.00"}
    assert await users.alice.error(DASHBOARD_Q, {"limit": 5}) == "FORBIDDEN"
    assert await users.staff.error(DASHBOARD_Q, {"limit": 1000}) == "BAD_USER_INPUT"


async def test_concurrent_writes_are_visible_to_read_your_writes_queries(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 1000)
    customers = [users.customer() for _ in range(8)]

    async def buy_and_read(api: Any) -> None:
        for _ in range(5):
            placed = await place(api, [(sku, 1)])
            order = (await api.ok(ORDER_Q, {"id": placed["orderId"], "at": placed["position"]}))[
                "order"
            ]
            # atLeast: the view exists at once and reflects the whole command, the stock
            # reservation after the order's own event included (see "Positions on views").
            assert order is not None and order["status"] == "PLACED"
            assert order["position"] >= placed["position"]

    await asyncio.gather(*(buy_and_read(c) for c in customers))
    last = await place(users.alice, [(sku, 1)])
    product = (await users.alice.ok(PRODUCT_Q, {"sku": sku, "at": last["position"]}))["product"]
    assert product["reserved"] == 41


async def test_readyz_reports_every_projection_caught_up(users: Users) -> None:
    last = await register(users, new_sku())
    await users.alice.ok(PRODUCT_Q, {"sku": last["sku"], "at": last["position"]})
    response = await users.client.get(users.url + "/readyz")
    report = response.json()
    assert response.status_code == 200 and report["ready"], report
    assert set(report["projections"]) == {p.name for p in all_projections()}
    products = report["projections"]["products"]
    assert products["status"] == "running" and products["checkpoint"] >= last["position"]
    assert products["lagEvents"] == report["head"] - products["checkpoint"] >= 0
