"""The GraphQL documents the tests send, and small helpers that send them."""

from __future__ import annotations

from typing import Any

from tests.kit.server import Api, Users

EVENT_FIELDS = "position eventId streamId streamVersion type schemaVersion data metadata occurredAt"
PRODUCT = f"""sku position events {{ {EVENT_FIELDS} }}
  product {{ sku name unitPrice onHand reserved available position updatedAt }}"""
ORDER = f"""orderId position events {{ {EVENT_FIELDS} }}
  order {{ id customerId status total amountPaid version position placedAt updatedAt expiresAt
           lines {{ sku quantity unitPrice lineTotal }} }}"""

REGISTER = f"""mutation($sku: String!, $name: String!, $price: Decimal!, $stock: Int!) {{
  registerProduct(sku: $sku, name: $name, unitPrice: $price, initialStock: $stock) {{ {PRODUCT} }}
}}"""
RESTOCK = f"""mutation($sku: String!, $q: Int!) {{
  restockProduct(sku: $sku, quantity: $q) {{ {PRODUCT} }} }}"""
PLACE = f"""mutation($lines: [OrderLineInput!]!, $key: String) {{
  placeOrder(lines: $lines, idempotencyKey: $key) {{ {ORDER} }} }}"""
PAY = f"""mutation($id: ID!, $amount: Decimal!, $key: String) {{
  payOrder(orderId: $id, amount: $amount, idempotencyKey: $key) {{ {ORDER} }} }}"""
SHIP = f"mutation($id: ID!) {{ shipOrder(orderId: $id) {{ {ORDER} }} }}"
CANCEL = f"""mutation($id: ID!, $reason: String!) {{
  cancelOrder(orderId: $id, reason: $reason) {{ {ORDER} }} }}"""
REVIEW = f"""mutation($sku: String!, $rating: Int!, $comment: String!) {{
  postReview(sku: $sku, rating: $rating, comment: $comment) {{
    reviewId position events {{ {EVENT_FIELDS} }} rating {{ sku rating reviewCount position }}
  }} }}"""
EVENTS = f"""query($after: Position, $first: Int!, $stream: String) {{
  events(after: $after, first: $first, streamId: $stream) {{ {EVENT_FIELDS} }} }}"""


async def register(users: Users, sku: str, price: str = "19.99", stock: int = 10) -> Any:
    data = await users.staff.ok(
        REGISTER, {"sku": sku, "name": "Widget", "price": price, "stock": stock}
    )
    return data["registerProduct"]


async def place(api: Api, lines: list[tuple[str, int]], key: str | None = None) -> Any:
    variables = {"lines": [{"sku": s, "quantity": q} for s, q in lines], "key": key}
    return (await api.ok(PLACE, variables))["placeOrder"]


async def stream_events(users: Users, stream: str) -> list[dict[str, Any]]:
    data = await users.staff.ok(EVENTS, {"after": 0, "first": 1000, "stream": stream})
    events: list[dict[str, Any]] = data["events"]
    return events


# Lean documents for the load generators (bench/): the least a response can carry, so that
# the client costs little beside the server it measures.
LEAN_REGISTER = """mutation($sku: String!, $stock: Int!) {
  registerProduct(sku: $sku, name: "Bench", unitPrice: "9.99", initialStock: $stock) {
    product { sku } } }"""
LEAN_PLACE = """mutation($sku: String!) {
  placeOrder(lines: [{sku: $sku, quantity: 1}]) { orderId position events { position streamId } }
}"""
LEAN_PRODUCT = """query($sku: String!) {
  product(sku: $sku) { sku name unitPrice onHand reserved available position updatedAt } }"""
LEAN_PRODUCT_SUB = "subscription($sku: String!) { product(sku: $sku) { reserved position } }"
