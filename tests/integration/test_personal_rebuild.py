"""Forgetting survives a rebuild: read models rebuilt from the log after a forget hold none of
that customer's personal data (their keys are gone, so the log's envelopes open to nothing),
and those rebuilt before it are erased by CustomerForgotten; other customers' data is
rebuilt as it was. Also: a customer forgotten and placing again in one group commit."""

from __future__ import annotations

import uuid
from typing import Any

from application.customers import ForgetCustomer
from application.orders import PlaceOrder
from application.products import RegisterProduct
from application.shop import Shop
from domain.contact import ShippingAddress
from domain.values import Actor
from eventgraph.runtime import open_runtime
from projections import all_projections
from projections.rebuild import rebuild
from tests.kit.database import plaintext_in

STAFF = Actor("staff-1", "staff")


def address(name: str) -> ShippingAddress:
    return ShippingAddress(name, f"{name} House", None, "Leeds", "LS1 1AA", "GB")


async def orders_of(pool: Any, customer: str) -> list[tuple[Any, Any]]:
    rows = await pool.fetch(
        "SELECT shipping_address, email FROM readmodel.orders WHERE customer_id = $1"
        " ORDER BY placed_at",
        customer,
    )
    return [(r["shipping_address"], r["email"]) for r in rows]


async def caught_up(runtime: Any) -> None:
    head = await runtime.store.head()
    for projection in all_projections():
        await runtime.watch.wait(projection.name, head, 60)


async def test_a_rebuild_after_a_forget_brings_none_of_it_back(clean_db: str) -> None:
    ada, bob = Actor("ada-1", "customer"), Actor("bob-1", "customer")
    ada_name, bob_name = f"Ada{uuid.uuid4().hex[:8]}", f"Bob{uuid.uuid4().hex[:8]}"
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await shop.handle(RegisterProduct(STAFF, "P", "P", "3.00", 50))
        for n in range(3):
            mail = f"ada{n}@example.org"
            await shop.handle(PlaceOrder(ada, [("P", 1)], None, address(ada_name), mail))
            await shop.handle(PlaceOrder(bob, [("P", 2)], None, address(bob_name), None))
        await caught_up(runtime)
        assert len(await orders_of(runtime.pool, "ada-1")) == 3
        totals_before = await runtime.pool.fetchrow("SELECT * FROM readmodel.sales_totals")

        await shop.handle(ForgetCustomer(ada, "ada-1"))
        await caught_up(runtime)
        assert await orders_of(runtime.pool, "ada-1") == [(None, None)] * 3
        async with runtime.pool.acquire() as conn:
            assert await plaintext_in(conn, [ada_name, "ada0@example.org"]) == []

        for projection in all_projections():
            await rebuild(runtime.dsn, runtime.store, projection)
        assert await orders_of(runtime.pool, "ada-1") == [(None, None)] * 3
        bobs = await orders_of(runtime.pool, "bob-1")
        assert [a["name"] for a, _ in bobs] == [bob_name] * 3, "others rebuilt as they were"
        assert await runtime.pool.fetchrow("SELECT * FROM readmodel.sales_totals") == (
            totals_before
        ), "amounts are not personal data"
        async with runtime.pool.acquire() as conn:
            assert await plaintext_in(conn, [ada_name, "ada0@example.org"]) == []
            assert await plaintext_in(conn, [bob_name], "rm%") != [], "the scan finds things"
