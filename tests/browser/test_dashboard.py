"""The live dashboard at `/` in a real browser: signed in by the URL `eventgraph token --open`
prints, it shows what other clients do within a second, says when it is reconnecting, and
recovers by itself when the server comes back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Dialog, Page, expect

from tests.browser.conftest import gql, snap
from tests.kit.server import Server, start_server, stop_server, token

REGISTER = """mutation($sku: String!) {
  registerProduct(sku: $sku, name: "Lamp", unitPrice: "24.50", initialStock: 20) { position } }"""
RESTOCK = "mutation($sku: String!) { restockProduct(sku: $sku, quantity: 3) { position } }"
PLACE = """mutation($sku: String!) {
  placeOrder(lines: [{ sku: $sku, quantity: 2 }]) { orderId position } }"""
SHIP = "mutation($id: ID!) { shipOrder(orderId: $id) { position } }"
SECOND = 1_000  # ms: what "live" means on this page


def sku() -> str:
    return "B-" + uuid.uuid4().hex[:8].upper()


def login_url(server: Server, sub: str, role: str) -> str:
    return f"{server.url}/#token={token(sub, role)}"


async def signed_in(page: Page, server: Server, sub: str, role: str) -> None:
    await page.goto(login_url(server, sub, role))
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)


async def position_of(page: Page, panel: str) -> int:
    value = await page.locator(f'[data-position-of="{panel}"]').get_attribute("data-position")
    return int(value or 0)


async def test_staff_see_other_clients_writes_within_a_second(page: Page, site: Server) -> None:
    product = sku()
    staff = token("stella", "staff")
    await gql(site, staff, REGISTER, sku=product)
    await signed_in(page, site, "stella", "staff")
    assert "token" not in page.url, "the token leaves the address bar"
    row = page.locator(f'#products-body tr[data-sku="{product}"]')
    await expect(row.locator('[data-field="available"]')).to_have_text("20")
    placed_before = int(await page.locator("#ordersPlaced").text_content() or 0)

    started = time.monotonic()
    restocked = (await gql(site, staff, RESTOCK, sku=product))["restockProduct"]
    await expect(row.locator('[data-field="available"]')).to_have_text("23", timeout=SECOND)
    restock_ms = (time.monotonic() - started) * 1000
    assert await position_of(page, "products") >= restocked["position"]

    started = time.monotonic()
    placed = (await gql(site, token("carol"), PLACE, sku=product))["placeOrder"]
    order = page.locator(f'#orders-body tr[data-order="{placed["orderId"]}"]')
    await expect(order.locator('[data-field="status"]')).to_have_text("PLACED", timeout=SECOND)
    await expect(page.locator("#ordersPlaced")).to_have_text(str(placed_before + 1), timeout=SECOND)
    await expect(row.locator('[data-field="available"]')).to_have_text("21", timeout=SECOND)
    order_ms = (time.monotonic() - started) * 1000
    assert await position_of(page, "orders") >= placed["position"]
    assert await position_of(page, "sales") >= placed["position"]
    await snap(page, "dashboard-staff")
    print(f"shown after: restock {restock_ms:.0f} ms, order {order_ms:.0f} ms")


async def test_a_customer_buys_pays_and_sees_the_order_move(page: Page, site: Server) -> None:
    product = sku()
    await gql(site, token("stella", "staff"), REGISTER, sku=product)
    await signed_in(page, site, "dora", "customer")
    row = page.locator(f'#products-body tr[data-sku="{product}"]')
    await row.get_by_role("button", name="Buy one Lamp").click()
    order = page.locator("#orders-body tr").first
    await expect(order.locator('[data-field="status"]')).to_have_text("PLACED")
    await expect(row.locator('[data-field="available"]')).to_have_text("19")
    await order.get_by_role("button", name="Pay").click()
    await expect(order.locator('[data-field="status"]')).to_have_text("PAID")
    order_id = await order.get_attribute("data-order")
    await gql(site, token("stella", "staff"), SHIP, id=order_id)
    await expect(order.locator('[data-field="status"]')).to_have_text("SHIPPED", timeout=SECOND)
    await expect(page.locator("#sales")).to_be_hidden()  # staff panels stay staff-only
    await snap(page, "dashboard-customer")


async def test_the_token_is_kept_for_the_tab_only(page: Page, site: Server) -> None:
    await signed_in(page, site, "erin", "customer")
    await page.reload()
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    other_tab = await page.context.browser.new_context()  # type: ignore[union-attr]
    fresh = await other_tab.new_page()
    await fresh.goto(site.url + "/")
    await expect(fresh.locator("#signin")).to_be_visible()
    await expect(fresh.locator("#connection")).to_have_text("signed out")
    await snap(fresh, "dashboard-sign-in")
    await other_tab.close()


async def test_a_link_can_neither_swap_the_account_nor_break_the_page(
    page: Page, site: Server
) -> None:
    await signed_in(page, site, "erin", "customer")
    asked: list[str] = []

    async def decline(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", decline)
    await page.goto("about:blank")  # a link opened in this tab: the page loads anew
    await page.goto(login_url(site, "mallory", "staff"))
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    await expect(page.locator("#who")).to_have_text("erin (customer)")
    assert asked and "mallory" in asked[0] and "token" not in page.url
    await page.goto("about:blank")
    await page.goto(f"{site.url}/#token=%E0%A4%A")  # mangled: ignored
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    await expect(page.locator("#who")).to_have_text("erin (customer)")


async def test_a_refused_token_shows_as_expired_not_as_reconnecting(
    page: Page, site: Server
) -> None:
    from application.auth import mint_token

    forged = mint_token("another-secret-" + "y" * 32, "mallory", "staff")  # type: ignore[arg-type]
    await page.goto(f"{site.url}/#token={forged}")
    await expect(page.locator("#connection")).to_have_text("token expired", timeout=10_000)


async def test_the_dashboard_reconnects_by_itself_when_the_server_restarts(
    page: Page, site_database: str, tmp_path: Path
) -> None:
    server = start_server(site_database, tmp_path)
    try:
        product = sku()
        staff = token("stella", "staff")
        await gql(server, staff, REGISTER, sku=product)
        await signed_in(page, server, "stella", "staff")
        await page.evaluate("window.notReloaded = true")
        row = page.locator(f'#products-body tr[data-sku="{product}"]')
        await expect(row.locator('[data-field="available"]')).to_have_text("20")

        port = int(server.url.rsplit(":", 1)[1])
        stop_server(server)
        await expect(page.locator("#connection")).to_have_text("reconnecting", timeout=10_000)
        await snap(page, "dashboard-reconnecting")
        server = start_server(site_database, tmp_path, port=port)
        await expect(page.locator("#connection")).to_have_text("connected", timeout=20_000)

        await gql(server, staff, RESTOCK, sku=product)
        await expect(row.locator('[data-field="available"]')).to_have_text("23", timeout=SECOND)
        assert await page.evaluate("window.notReloaded === true"), "recovered without a reload"
    finally:
        stop_server(server)


@pytest.mark.parametrize("path", ["/", "/graphql", "/static/dashboard.js"])
async def test_pages_refuse_to_be_framed_or_to_talk_elsewhere(
    page: Page, site: Server, path: str
) -> None:
    response = await page.goto(site.url + path)
    assert response is not None and response.status == 200
    policy = await response.header_value("content-security-policy") or ""
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
