"""Personal data in the console at `/`: staff see where each order ships (the address and
email given at checkout); once the customer is forgotten, both leave the page by themselves
(the live order view pushes the erased order), while the order itself stays."""

from __future__ import annotations

import uuid

from playwright.async_api import Page, expect

from tests.browser.conftest import gql
from tests.browser.test_dashboard import order_row, register, signed_in, sku
from tests.kit.server import Server, token

PLACE = """mutation($sku: String!, $address: ShippingAddressInput, $email: String) {
  placeOrder(lines: [{sku: $sku, quantity: 1}], shippingAddress: $address, email: $email) {
    orderId position } }"""
FORGET = "mutation($c: String!) { forgetCustomer(customerId: $c) { position } }"
LIVE = 20_000  # ms


async def test_staff_see_where_an_order_ships_until_its_customer_is_forgotten(
    page: Page, site: Server
) -> None:
    staff = token("stella", "staff")
    product = sku()
    await register(site, staff, sku=product, stock=5)
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    name = f"Grace {uuid.uuid4().hex[:6]}"
    address = {
        "name": name,
        "line1": "7 Harbour Road",
        "city": "Porto",
        "postalCode": "4000-001",
        "country": "PT",
    }
    email = f"{customer}@example.org"
    placed = await gql(site, token(customer), PLACE, sku=product, address=address, email=email)
    order_id = placed["placeOrder"]["orderId"]
    await signed_in(page, site, "stella", "staff")
    ship_to = order_row(page, order_id).locator('[data-field="ship-to"]')
    await expect(ship_to).to_contain_text(name, timeout=LIVE)
    await expect(ship_to).to_contain_text("4000-001 Porto")
    await expect(ship_to).to_contain_text(email)

    await gql(site, token(customer), FORGET, c=customer)
    await expect(ship_to).to_have_count(0, timeout=LIVE)
    row = order_row(page, order_id)
    await expect(row).to_be_visible()
    await expect(row).not_to_contain_text(name)
    await expect(row.locator('[data-field="status"]')).to_have_text("Awaiting payment")
