"""Personal data end to end, against a running server: an order's shipping address and email,
sealed under the customer's own key; forgetCustomer destroys it, after which every read path
answers null and no table of either database holds the plaintext; exportCustomer for the
right of access; and what is refused."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.kit.database import plaintext_in
from tests.kit.documents import register
from tests.kit.server import MASTER_KEY, Server, Users, new_sku, token
from tests.kit.ws import acked

ADDRESS_FIELDS = "shippingAddress { name line1 line2 city postalCode country } email"
PLACE = f"""mutation($lines: [OrderLineInput!]!, $address: ShippingAddressInput, $email: String) {{
  placeOrder(lines: $lines, shippingAddress: $address, email: $email) {{
    orderId position events {{ type data }} order {{ id status total {ADDRESS_FIELDS} }} }} }}"""
ORDER = f"""query($id: ID!, $at: Position) {{
  order(id: $id, atLeast: $at) {{ id status total amountPaid {ADDRESS_FIELDS} position }} }}"""
FORGET = "mutation($c: String!) { forgetCustomer(customerId: $c) { customerId position } }"
EXPORT = "query($c: String!) { exportCustomer(customerId: $c) { position streamId type data } }"
LIVE = f"subscription($id: ID!) {{ order(id: $id) {{ id status {ADDRESS_FIELDS} position }} }}"
PRODUCT = "query($sku: String!, $at: Position) { product(sku: $sku, atLeast: $at) { reserved } }"
DASHBOARD = "query($at: Position) { salesDashboard(atLeast: $at) { ordersPlaced revenue } }"


def address(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "line1": f"{name} House, 12 Long Road",
        "line2": None,
        "city": "Bristol",
        "postalCode": "BS1 4DJ",
        "country": "gb",
    }


async def scan(server: Server, database_url: str, *needles: str, schemas: str = "%") -> list[str]:
    """The needles found in any table of the server's databases (as text, or as hex)."""
    found = []
    for url in {database_url, server.read_url or database_url}:
        conn = await asyncpg.connect(url)
        try:
            found += await plaintext_in(conn, needles, schemas)
        finally:
            await conn.close()
    return found


async def test_a_forgotten_customer_reads_as_null_everywhere_and_nowhere_in_clear(
    users: Users, server: Server, server_database_url: str
) -> None:
    sku = new_sku()
    await register(users, sku, "4.00", 10)
    name = f"Ada{uuid.uuid4().hex[:10]}"
    email = f"{name.lower()}@example.org"
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    ada, bob = users.customer(customer_id), users.customer()
    lines = [{"sku": sku, "quantity": 2}]
    placed = (await ada.ok(PLACE, {"lines": lines, "address": address(name), "email": email}))[
        "placeOrder"
    ]
    order = placed["order"]
    assert order["shippingAddress"] == {**address(name), "country": "GB"}  # read your write
    assert order["email"] == email
    assert placed["events"][0]["data"]["email"] == email  # the customer's own payload
    other_name = f"Bob{uuid.uuid4().hex[:10]}"
    bobs = (await bob.ok(PLACE, {"lines": lines, "address": address(other_name)}))["placeOrder"]

    seen_by_staff = (await users.staff.ok(ORDER, {"id": placed["orderId"]}))["order"]
    assert seen_by_staff["email"] == email and seen_by_staff["shippingAddress"]["name"] == name
    # The log, its snapshots, keys and idempotency records never hold it (the read models do,
    # until the customer is forgotten).
    assert await scan(server, server_database_url, name, email, schemas="eventgraph%") == []
    exported = (await ada.ok(EXPORT, {"c": customer_id}))["exportCustomer"]
    assert [e["type"] for e in exported] == ["OrderPlaced"]
    assert exported[0]["data"]["shippingAddress"]["name"] == name

    watcher = await acked(server.url, token(customer_id))
    await watcher.subscribe("o", LIVE, {"id": placed["orderId"]})
    assert (await watcher.next_data("o"))["order"]["email"] == email

    forgot = (await ada.ok(FORGET, {"c": customer_id}))["forgetCustomer"]
    assert forgot["customerId"] == customer_id and forgot["position"] > placed["position"]
    while (pushed := (await watcher.next_data("o"))["order"])["email"] is not None:
        pass
    assert pushed["shippingAddress"] is None and pushed["status"] == "PLACED"
    await watcher.ws.close()

    after = (await ada.ok(ORDER, {"id": placed["orderId"], "at": forgot["position"]}))["order"]
    assert after["shippingAddress"] is None and after["email"] is None
    assert (after["status"], after["total"]) == ("PLACED", order["total"]), "the order stays"
    exported = (await users.staff.ok(EXPORT, {"c": customer_id}))["exportCustomer"]
    assert [e["type"] for e in exported] == ["OrderPlaced", "CustomerForgotten"]
    assert exported[0]["data"]["shippingAddress"] is None and exported[0]["data"]["email"] is None
    assert await scan(server, server_database_url, name, email) == []

    bob_now = (await bob.ok(ORDER, {"id": bobs["orderId"], "at": forgot["position"]}))["order"]
    assert bob_now["shippingAddress"]["name"] == other_name, "another customer is untouched"
    reserved = await users.staff.ok(PRODUCT, {"sku": sku, "at": forgot["position"]})
    assert reserved["product"]["reserved"] == 4, "stock is unchanged by a forget"

    again = (await ada.ok(FORGET, {"c": customer_id}))["forgetCustomer"]
    assert again["position"] > forgot["position"], "twice is harmless"
    new_name = f"Ada{uuid.uuid4().hex[:10]}"
    back = (await ada.ok(PLACE, {"lines": lines, "address": address(new_name)}))["placeOrder"]
    assert back["order"]["shippingAddress"]["name"] == new_name, "back, under a new key"
    old = (await ada.ok(ORDER, {"id": placed["orderId"], "at": back["position"]}))["order"]
    assert old["shippingAddress"] is None, "the old order stays erased"

    # Never in the server's log lines or metrics, and no key either.
    metrics = (await users.client.get(server.url + "/metrics")).text
    logged = server.log.read_text()
    assert "eventgraph_command_duration_seconds_count" in metrics and "/graphql" in logged
    for secret in (name, email, new_name, MASTER_KEY):
        assert secret not in logged and secret not in metrics


async def test_what_is_refused(users: Users) -> None:
    sku = new_sku()
    await register(users, sku, "1.00", 5)
    ann = users.customer()
    lines = [{"sku": sku, "quantity": 1}]
    bad_inputs: list[dict[str, Any]] = [
        {"email": "not an email"},
        {"email": "a@b"},
        {"email": "x" * 300 + "@example.org"},
        {"address": {**address("Ann"), "country": "XX"}},
        {"address": {**address("Ann"), "country": "DEU"}},
        {"address": {**address("Ann\u202e"), "city": "Bristol"}},
        {"address": {**address("Ann"), "line1": "x\x00"}},
        {"address": {**address("Ann"), "name": "x" * 201}},
        {"address": {**address("Ann"), "postalCode": "<script>"}},
        {"address": {**address("Ann"), "city": "   "}},
    ]
    for bad in bad_inputs:
        assert await ann.error(PLACE, {"lines": lines, **bad}) == "BAD_USER_INPUT", bad
    assert (await users.staff.ok(PRODUCT, {"sku": sku}))["product"]["reserved"] == 0

    victim = f"c-{uuid.uuid4().hex[:8]}"
    assert await ann.error(FORGET, {"c": victim}) == "FORBIDDEN"
    assert await ann.error(EXPORT, {"c": victim}) == "FORBIDDEN"
    assert await users.anonymous.error(FORGET, {"c": victim}) == "UNAUTHENTICATED"
    assert await users.anonymous.error(EXPORT, {"c": victim}) == "UNAUTHENTICATED"
    for bad_id in ("", "x" * 201, "bad\x00id"):
        assert await users.staff.error(FORGET, {"c": bad_id}) == "BAD_USER_INPUT"
        assert await users.staff.error(EXPORT, {"c": bad_id}) == "BAD_USER_INPUT"
    assert (await users.staff.ok(EXPORT, {"c": victim}))["exportCustomer"] == []
