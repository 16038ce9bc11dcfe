"""A stored v1 event is upcast wherever the server reads it."""

from __future__ import annotations

import uuid

import asyncpg

from eventstore.events import NO_STREAM, NewEvent
from eventstore.store import EventStore, init_connection
from tests.kit.documents import EVENTS, PAY, register
from tests.kit.server import Users, new_sku


async def test_an_order_placed_before_v2_is_upcast_when_read_and_when_paid(
    users: Users, server_database_url: str
) -> None:
    sku = new_sku()
    await register(users, sku, "1.10", 10)
    order_id = str(uuid.uuid4())
    customer = users.customer("legacy-customer")
    v1 = NewEvent(
        "OrderPlaced",
        {
            "orderId": order_id,
            "customerId": "legacy-customer",
            "lines": [{"sku": sku, "quantity": 3, "unitPrice": "1.10"}],
        },
        schema_version=1,
    )
    pool = await asyncpg.create_pool(
        server_database_url, min_size=1, max_size=1, init=init_connection
    )
    assert pool is not None
    try:
        await EventStore(pool).append({f"order-{order_id}": (NO_STREAM, [v1])})
    finally:
        await pool.close()

    data = await users.staff.ok(EVENTS, {"after": 0, "first": 10, "stream": f"order-{order_id}"})
    [event] = data["events"]
    # v1 -> v2 gains the total, v2 -> v3 the deadline: none, for an order from before them.
    assert event["schemaVersion"] == 3 and event["data"]["total"] == "3.30"
    assert event["data"]["expiresAt"] is None

    paid = (await customer.ok(PAY, {"id": order_id, "amount": "3.30"}))["payOrder"]
    assert paid["order"]["status"] == "PAID" and paid["order"]["total"] == "3.30"
