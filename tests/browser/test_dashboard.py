"""The console at `/` in a real browser: signed in by the URL `eventgraph token --open`
prints, staff run the shop from it (register, restock, ship, cancel with a confirmation), a
customer gets a shop, failures read as sentences with the code on demand, an expired sign-in
pauses every action until a new token is pasted, and every panel catches up by itself after
the server restarts (SIGTERM, then SIGKILL) while other clients kept writing.

With EVENTGRAPH_DOCS_SCREENSHOTS=1 the tests also refresh the README's images,
docs/console-*.png (the viewport, 1280x900)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from application.auth import mint_sign_in_code, mint_token
from tests.browser.conftest import ROOT, gql, snap
from tests.kit.server import SECRET, Server, start_server, stop_server, token

REGISTER = """mutation($sku: String!, $stock: Int! = 20) {
  registerProduct(sku: $sku, name: "Lamp", unitPrice: "24.50", initialStock: $stock) { position } }"""
RESTOCK = "mutation($sku: String!) { restockProduct(sku: $sku, quantity: 3) { position } }"
PLACE = """mutation($sku: String!) {
  placeOrder(lines: [{ sku: $sku, quantity: 2 }]) { orderId position } }"""
PAY = """mutation($id: ID!) { payOrder(orderId: $id, amount: "49.00") { position } }"""
SHIP = "mutation($id: ID!) { shipOrder(orderId: $id) { position } }"
CANCEL = """mutation($id: ID!) { cancelOrder(orderId: $id, reason: "test") { position } }"""
ORDER = "query($id: ID!) { order(id: $id) { status amountPaid } }"
PRODUCT = "query($sku: String!) { product(sku: $sku) { onHand reserved available name } }"
SALES = """{ salesDashboard { ordersPlaced ordersPaid ordersShipped ordersCancelled revenue } }"""
SECOND = 1_000  # ms: what "live" means on this page
DOCS = ROOT / "docs"
TIMES = "\u00d7"  # the multiplication sign of "2 x Lamp" as the page writes it
MONEY = re.compile(r"^€\d{1,3}(,\d{3})*\.\d{2}$")


async def register(site: Server, bearer: str, **variables: Any) -> int:
    """Register a product through another client and wait until the products read model
    has it, so that a page opened next reads it (the page cannot know this client's write)."""
    position: int = (await gql(site, bearer, REGISTER, **variables))["registerProduct"]["position"]
    await gql(
        site,
        bearer,
        "query($at: Position) { products(first: 1, atLeast: $at) { pageInfo { hasNextPage } } }",
        at=position,
    )
    return position


def sku() -> str:
    return "B-" + uuid.uuid4().hex[:8].upper()


def login_url(server: Server, sub: str, role: str, bearer: str | None = None) -> str:
    """What `eventgraph token --open` prints (a one-time code), or a link with a token."""
    if bearer is not None:
        return f"{server.url}/#token={bearer}"
    return f"{server.url}/#code={mint_sign_in_code(SECRET, sub, role, 24 * 3600)}"  # type: ignore[arg-type]


async def confirm_sign_in(page: Page, sub: str, role: str) -> None:
    """The page asks before a link signs it in, naming the account and its role."""
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible(timeout=10_000)
    await expect(dialog).to_contain_text(f"{sub} ({role})")
    await dialog.get_by_role("button", name=f"Sign in as {sub}").click()


async def signed_in(
    page: Page, server: Server, sub: str, role: str, bearer: str | None = None
) -> None:
    await page.goto(login_url(server, sub, role, bearer))
    await confirm_sign_in(page, sub, role)
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)


async def position_of(page: Page, panel: str) -> int:
    value = await page.locator(f'[data-position-of="{panel}"]').get_attribute("data-position")
    return int(value or 0)


async def picture(page: Page, name: str) -> None:
    """A test artifact (the whole page) and, when asked, the README's image (the viewport)."""
    await snap(page, f"dashboard-{name}")
    if os.environ.get("EVENTGRAPH_DOCS_SCREENSHOTS") == "1":
        await page.screenshot(path=str(DOCS / f"console-{name}.png"))


def stock_row(page: Page, product: str) -> Any:
    return page.locator(f'#products-body tr[data-sku="{product}"]')


def order_row(page: Page, order_id: str) -> Any:
    return page.locator(f'#orders-body tr[data-order="{order_id}"]')


async def test_staff_see_other_clients_writes_within_a_second(page: Page, site: Server) -> None:
    product = sku()
    staff = token("stella", "staff")
    await register(site, staff, sku=product)
    await signed_in(page, site, "stella", "staff")
    assert "token" not in page.url, "the token leaves the address bar"
    row = stock_row(page, product)
    await expect(row.locator('[data-field="available"]')).to_have_text("20")
    await expect(row.locator('[data-field="price"]')).to_have_text("€24.50")
    placed_before = int(await page.locator("#ordersPlaced").text_content() or 0)

    started = time.monotonic()
    restocked = (await gql(site, staff, RESTOCK, sku=product))["restockProduct"]
    await expect(row.locator('[data-field="available"]')).to_have_text("23", timeout=SECOND)
    restock_ms = (time.monotonic() - started) * 1000
    assert await position_of(page, "products") >= restocked["position"]

    started = time.monotonic()
    placed = (await gql(site, token("carol"), PLACE, sku=product))["placeOrder"]
    order = order_row(page, placed["orderId"])
    status = order.locator('[data-field="status"]')
    await expect(status).to_have_attribute("data-status", "PLACED", timeout=SECOND)
    await expect(status).to_have_text("Awaiting payment")
    await expect(page.locator("#ordersPlaced")).to_have_text(str(placed_before + 1), timeout=SECOND)
    await expect(row.locator('[data-field="available"]')).to_have_text("21", timeout=SECOND)
    await expect(row.locator('[data-field="reserved"]')).to_have_text("2")
    order_ms = (time.monotonic() - started) * 1000
    assert await position_of(page, "orders") >= placed["position"]
    assert await position_of(page, "sales") >= placed["position"]
    # sold and reserved apart: paid units are sold (and still reserved until shipped)
    await expect(row.locator('[data-field="sold"]')).to_have_text("0")
    await gql(site, token("carol"), PAY, id=placed["orderId"])
    await expect(row.locator('[data-field="sold"]')).to_have_text("2", timeout=SECOND)
    await gql(site, staff, SHIP, id=placed["orderId"])
    await expect(row.locator('[data-field="reserved"]')).to_have_text("0", timeout=SECOND)
    await expect(row.locator('[data-field="sold"]')).to_have_text("2")
    await expect(row.locator('[data-field="onHand"]')).to_have_text("21")
    # the time it was placed, and the full id on hover
    placed_at = order.locator("time")
    assert (await placed_at.get_attribute("datetime") or "").startswith("20")
    await expect(placed_at).to_contain_text("just now")
    await expect(order.locator("code")).to_have_attribute("title", placed["orderId"])
    await expect(page.locator("#revenue")).to_have_text(MONEY)
    await expect(page.locator("#chart-summary")).to_contain_text("in the last 30 minutes")
    await picture(page, "staff")
    print(f"shown after: restock {restock_ms:.0f} ms, order {order_ms:.0f} ms")


async def test_staff_register_and_restock_products_from_the_page(page: Page, site: Server) -> None:
    product = sku()
    await signed_in(page, site, "stella", "staff")
    await page.locator("#register-sku").fill(product)
    await page.locator("#register-name").fill("Desk fan")
    await page.locator("#register-price").fill("39.90")
    await page.locator("#register-stock").fill("12")
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#notice")).to_have_text(
        f"Registered Desk fan ({product}) at €39.90, 12 in stock"
    )
    row = stock_row(page, product)
    await expect(row.locator('[data-field="name"]')).to_have_text("Desk fan")
    await expect(row.locator('[data-field="price"]')).to_have_text("€39.90")
    await expect(row.locator('[data-field="onHand"]')).to_have_text("12")
    await expect(page.locator("#register-sku")).to_have_value("")  # ready for the next one

    await row.get_by_label("Restock quantity for Desk fan").fill("5")
    await row.get_by_role("button", name="Restock Desk fan").click()
    await expect(page.locator("#notice")).to_have_text("Restocked Desk fan: +5, 17 on hand")
    await expect(row.locator('[data-field="onHand"]')).to_have_text("17")
    await expect(row.locator('[data-field="available"]')).to_have_text("17")
    seen = (await gql(site, token("stella", "staff"), PRODUCT, sku=product))["product"]
    assert seen == {"onHand": 17, "reserved": 0, "available": 17, "name": "Desk fan"}

    # a quantity being typed survives a live update of its row
    await row.get_by_label("Restock quantity for Desk fan").fill("7")
    await gql(site, token("fay"), PLACE, sku=product)
    await expect(row.locator('[data-field="reserved"]')).to_have_text("2", timeout=SECOND)
    await expect(row.get_by_label("Restock quantity for Desk fan")).to_have_value("7")


async def test_cancelling_a_paid_order_asks_first_and_declining_changes_nothing(
    page: Page, site: Server
) -> None:
    product = sku()
    staff = token("stella", "staff")
    await register(site, staff, sku=product)
    carol = token("carol")
    paid = (await gql(site, carol, PLACE, sku=product))["placeOrder"]["orderId"]
    await gql(site, carol, PAY, id=paid)
    await signed_in(page, site, "stella", "staff")
    commands: list[str] = []
    page.on(
        "request",
        lambda r: commands.append(r.post_data or "") if r.method == "POST" else None,
    )
    row = order_row(page, paid)
    await expect(row.locator('[data-field="status"]')).to_have_attribute("data-status", "PAID")

    await row.get_by_role("button", name="Cancel").click()
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("refunds €49.00 to carol")
    await dialog.get_by_role("button", name="Keep the order").click()
    await expect(dialog).to_be_hidden()
    await expect(row.locator('[data-field="status"]')).to_have_attribute("data-status", "PAID")
    assert not [c for c in commands if "cancelOrder" in c], "declined: nothing was sent"
    assert (await gql(site, staff, ORDER, id=paid))["order"] == {
        "status": "PAID",
        "amountPaid": "49.00",
    }
    await row.get_by_role("button", name="Cancel").click()  # Escape declines too
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert not [c for c in commands if "cancelOrder" in c]

    await row.get_by_role("button", name="Cancel").click()
    await dialog.get_by_role("button", name="Cancel and refund €49.00").click()
    await expect(row.locator('[data-field="status"]')).to_have_attribute("data-status", "CANCELLED")
    await expect(page.locator("#notice")).to_have_text(
        f"Order {paid[:8]}… cancelled, €49.00 refunded"
    )
    assert (await gql(site, staff, ORDER, id=paid))["order"]["status"] == "CANCELLED"

    # ship: no question, a sentence
    other = (await gql(site, carol, PLACE, sku=product))["placeOrder"]["orderId"]
    await gql(site, carol, PAY, id=other)
    await order_row(page, other).get_by_role("button", name="Ship").click()
    await expect(page.locator("#notice")).to_have_text(f"Order {other[:8]}… shipped")
    await expect(order_row(page, other).locator('[data-field="status"]')).to_have_text("Shipped")

    # the full id, one click away
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    await order_row(page, other).get_by_role("button", name=f"Copy order id {other}").click()
    assert await page.evaluate("navigator.clipboard.readText()") == other


async def test_an_error_reads_as_a_sentence_with_its_code_on_demand_and_stays_in_view(
    page: Page, site: Server
) -> None:
    taken = sku()
    await register(site, token("stella", "staff"), sku=taken)
    await page.set_viewport_size({"width": 1280, "height": 900})
    await signed_in(page, site, "stella", "staff")
    await page.locator("#register-sku").fill(taken)
    await page.locator("#register-name").fill("Another lamp")
    await page.locator("#register-price").fill("10")
    await page.get_by_role("button", name="Register").click()
    error = page.locator("#last-error")
    await expect(error.locator("#error-text")).to_have_text(
        f"A product with SKU {taken} already exists"
    )
    await expect(error.locator("#error-code")).to_be_hidden()  # the code: on demand
    await error.get_by_text("Details").click()
    await expect(error.locator("#error-code")).to_have_text("ALREADY_EXISTS")
    await expect(error.locator("#error-message")).to_contain_text("already exists")
    await picture(page, "error")

    await page.set_viewport_size({"width": 1280, "height": 500})
    await page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert await page.evaluate("window.scrollY") > 200, "the page scrolled"
    await expect(error).to_be_in_viewport()
    await expect(page.locator("#connection")).to_be_in_viewport()
    box = await error.bounding_box()
    assert box is not None and box["y"] < 200, "the header stays at the top"

    await error.get_by_role("button", name="Dismiss the error").click()
    await expect(error).to_be_hidden()


async def test_a_customer_gets_a_shop_with_their_orders(page: Page, site: Server) -> None:
    product = sku()
    await register(site, token("stella", "staff"), sku=product)
    await signed_in(page, site, "dora", "customer")
    card = page.locator(f'#shop-list li[data-sku="{product}"]')
    await expect(card).to_contain_text("Lamp")
    await expect(card).to_contain_text("€24.50")
    await card.get_by_role("button", name="Buy one Lamp").click()
    await expect(page.locator("#notice")).to_contain_text(f"Order placed: 1 {TIMES} Lamp, €24.50")
    order = page.locator("#orders-body tr").first
    status = order.locator('[data-field="status"]')
    await expect(status).to_have_text("Awaiting payment")
    await expect(order).to_contain_text(f"1 {TIMES} Lamp")
    await expect(card.locator('[data-field="available"]')).to_have_text("19 in stock")
    await order.get_by_role("button", name="Pay").click()
    await expect(status).to_have_attribute("data-status", "PAID")
    await expect(status).to_have_text("Paid, being prepared")
    order_id = await order.get_attribute("data-order")
    await gql(site, token("stella", "staff"), SHIP, id=order_id)
    await expect(status).to_have_text("Shipped", timeout=SECOND)
    await expect(order.get_by_role("button", name="Cancel")).to_have_count(0)

    await card.get_by_role("button", name="Buy one Lamp").click()
    second = page.locator("#orders-body tr").first
    await expect(second.locator('[data-field="status"]')).to_have_text("Awaiting payment")
    await second.get_by_role("button", name="Cancel").click()
    await expect(page.locator("dialog#confirm")).to_contain_text("Cancel your order")
    await page.get_by_role("button", name="Cancel the order").click()
    await expect(second.locator('[data-field="status"]')).to_have_text("Cancelled")

    # a shop, not a developer page
    text = await page.locator("body").inner_text()
    assert product not in text, "no SKU as a label"
    assert "position" not in text.lower()
    await expect(page.get_by_role("link", name="GraphiQL")).to_have_count(0)
    await expect(page.locator('a[href="/graphql"]')).to_have_count(0)
    for panel in ("#sales", "#activity", "#products"):
        await expect(page.locator(panel)).to_be_hidden()  # staff panels stay staff-only
    await expect(page.locator("#who")).to_have_text("Signed in as dora")
    await picture(page, "customer")


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
    dialog = page.locator("dialog#confirm")
    for link in (login_url(site, "mallory", "staff"), login_url(site, "x", "y", token("mallory"))):
        await page.goto("about:blank")  # a link opened in this tab: the page loads anew
        await page.goto(link)
        await expect(dialog).to_contain_text("as mallory")
        await expect(dialog).to_contain_text("instead of erin (customer)")
        await dialog.get_by_role("button", name="Stay erin").click()
        await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
        await expect(page.locator("#who")).to_have_text("Signed in as erin")
        assert "token" not in page.url and "code" not in page.url
    await page.goto("about:blank")
    await page.goto(f"{site.url}/#token=%E0%A4%A")  # mangled: ignored
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    await expect(page.locator("#who")).to_have_text("Signed in as erin")


def unsigned(sub: str, role: str) -> str:
    """A token anyone can write: alg none, no signature."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    claims = {"sub": sub, "role": role, "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_a_link_is_checked_with_the_server_and_asked_about_before_any_sign_in(
    page: Page, site: Server
) -> None:
    """An unsigned or forged token in a link never replaces the tab's sign-in, and a real one
    signs in only after the person agreed, even for the same account (a role is enough)."""
    await signed_in(page, site, "erin", "customer")
    held = await page.evaluate("sessionStorage.getItem('eventgraph.token')")
    dialog = page.locator("dialog#confirm")
    forged = mint_token("another-secret-" + "y" * 32, "erin", "staff")
    for bad in (unsigned("erin", "staff"), forged):
        await page.goto("about:blank")
        await page.goto(f"{site.url}/#token={bad}")
        await expect(page.locator("#error-text")).to_contain_text(
            "The server did not accept the sign-in link", timeout=10_000
        )
        await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
        await expect(page.locator("#who")).to_have_text("Signed in as erin")
        await expect(dialog).to_be_hidden()
        assert await page.evaluate("sessionStorage.getItem('eventgraph.token')") == held

    # the same account with another role: asked, and declining keeps the customer
    await page.goto("about:blank")
    await page.goto(login_url(site, "erin", "staff"))
    await expect(dialog).to_contain_text("erin (staff) instead of erin (customer)")
    await page.keyboard.press("Escape")
    await expect(page.locator("#who")).to_have_text("Signed in as erin", timeout=10_000)
    assert await page.evaluate("sessionStorage.getItem('eventgraph.token')") == held

    # a fresh tab: asked too, and nothing is kept when declined
    fresh = await page.context.browser.new_context()  # type: ignore[union-attr]
    other = await fresh.new_page()
    await other.goto(login_url(site, "erin", "staff"))
    await expect(other.locator("dialog#confirm")).to_contain_text("as erin (staff).")
    await other.get_by_role("button", name="Do not sign in").click()
    await expect(other.locator("#signin")).to_be_visible()
    assert await other.evaluate("sessionStorage.getItem('eventgraph.token')") is None
    await fresh.close()


async def test_a_used_or_expired_link_signs_nothing_in(page: Page, site: Server) -> None:
    link = login_url(site, "erin", "customer")
    await page.goto(link)
    await confirm_sign_in(page, "erin", "customer")
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    fresh = await page.context.browser.new_context()  # type: ignore[union-attr]
    other = await fresh.new_page()
    await other.goto(link)  # the same URL again, as from the history: used
    await expect(other.locator("#signin-reason")).to_contain_text("used already")
    expired = mint_sign_in_code(SECRET, "erin", "customer", 60, lifetime_seconds=-1)
    await other.goto("about:blank")
    await other.goto(f"{site.url}/#code={expired}")
    await expect(other.locator("#signin-reason")).to_contain_text("expired")
    await expect(other.locator("dialog#confirm")).to_be_hidden()
    await fresh.close()


async def test_token_open_signs_the_console_in_and_leaves_nothing_reusable(
    page: Page, site: Server, tmp_path: Path
) -> None:
    """The URL `eventgraph token --open` prints (run with the server's secret) signs the
    console in after the confirmation; neither the page's URL, its history entry nor the
    printed URL holds the token, and the URL cannot sign in a second time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EVENTGRAPH_"))}
    env |= {"EVENTGRAPH_JWT_SECRET": SECRET, "EVENTGRAPH_DATA_DIR": str(tmp_path)}
    for desktop in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(desktop, None)
    args = ["token", "--sub", "olga", "--role", "staff", "--open", "--url", site.url]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventgraph.cli", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    printed = out.decode().strip()
    assert "#code=" in printed and "#token=" not in printed
    await page.goto(printed)
    await confirm_sign_in(page, "olga", "staff")
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    await expect(page.locator("#who")).to_have_text("olga (staff)")
    held = await page.evaluate("sessionStorage.getItem('eventgraph.token')")
    assert held and held not in printed
    assert page.url == site.url + "/", "the code leaves the address bar"
    # the tab's history: the blank page it started on, then the console without the code
    assert await page.evaluate("history.length") == 2
    await page.go_back()
    assert page.url == "about:blank"
    await page.go_forward()
    assert page.url == site.url + "/"
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    fresh = await page.context.browser.new_context()  # type: ignore[union-attr]
    again = await fresh.new_page()
    await again.goto(printed)
    await expect(again.locator("#signin-reason")).to_contain_text("used already")
    await fresh.close()


async def test_a_refused_token_shows_as_signed_out_not_as_reconnecting(
    page: Page, site: Server
) -> None:
    forged = mint_token("another-secret-" + "y" * 32, "mallory", "staff")
    await page.goto(site.url + "/")
    await page.locator("#token-input").fill(forged)  # pasted: the person's own doing
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#connection")).to_have_text("signed out", timeout=10_000)
    await expect(page.locator("#expired")).to_contain_text("The server did not accept your sign-in")
    await expect(page.get_by_role("button", name="Register")).to_be_disabled()


async def test_an_expired_sign_in_pauses_every_action_until_a_new_token_is_pasted(
    page: Page, site: Server
) -> None:
    product = sku()
    await register(site, token("stella", "staff"), sku=product)
    name = f"dora-{uuid.uuid4().hex[:6]}"
    before = (await gql(site, token(name), PLACE, sku=product))["placeOrder"]["orderId"]
    short = mint_token(SECRET, name, "customer", ttl_seconds=6)
    await signed_in(page, site, name, "customer", short)
    card = page.locator(f'#shop-list li[data-sku="{product}"]')
    buy = card.get_by_role("button", name="Buy one Lamp")
    first = order_row(page, before)
    await expect(buy).to_be_enabled()
    await expect(first.get_by_role("button", name="Pay")).to_be_enabled()

    banner = page.locator("#expired")
    await expect(banner).to_be_visible(timeout=10_000)  # the server closes 4403 at expiry
    await expect(banner).to_contain_text("Your sign-in has expired")
    await expect(banner).to_contain_text(f"eventgraph token --sub {name} --role customer --open")
    await expect(page.locator("#connection")).to_have_text("signed out")
    await expect(buy).to_be_disabled()
    await expect(first.get_by_role("button", name="Pay")).to_be_disabled()
    await expect(first.get_by_role("button", name="Cancel")).to_be_disabled()
    await snap(page, "dashboard-signed-out")

    # meanwhile the same customer buys elsewhere: the page catches up once signed in again
    elsewhere = (await gql(site, token(name), PLACE, sku=product))["placeOrder"]["orderId"]
    await page.locator("#resign-input").fill("not a token")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#resign-error")).to_contain_text("not a token")
    await page.locator("#resign-input").fill(token(name))
    await page.evaluate("window.notReloaded = true")
    await page.get_by_role("button", name="Continue").click()
    await expect(banner).to_be_hidden()
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    await expect(buy).to_be_enabled()
    await expect(order_row(page, elsewhere)).to_be_visible(timeout=5_000)
    await buy.click()
    await expect(page.locator("#orders-body tr")).to_have_count(3)
    assert await page.evaluate("window.notReloaded === true"), "carried on without a reload"


async def open_console(browser: Browser, server: Server, sub: str, role: str) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    await signed_in(page, server, sub, role)
    await page.evaluate("window.notReloaded = true")
    return page


async def test_every_panel_catches_up_after_server_restarts(
    browser: Browser, site: Server, site_database: str, tmp_path: Path
) -> None:
    """The console talks to a server of its own, on the site's database; other clients place,
    pay and cancel orders through the site while that one is down (SIGTERM, then SIGKILL)
    and right after it is back. Every panel ends with every order."""
    product = sku()
    staff = token("stella", "staff")
    rita = f"rita-{uuid.uuid4().hex[:6]}"
    buyers = [token(rita), token(f"sam-{uuid.uuid4().hex[:6]}")]
    await register(site, staff, sku=product, stock=1000)
    own = start_server(site_database, tmp_path)
    port = int(own.url.rsplit(":", 1)[1])
    staff_page = customer_page = None
    try:
        staff_page = await open_console(browser, own, "stella", "staff")
        customer_page = await open_console(browser, own, rita, "customer")
        placed: dict[str, str] = {}  # order id -> buyer token
        first = (await gql(site, buyers[0], PLACE, sku=product))["placeOrder"]["orderId"]
        placed[first] = buyers[0]
        await expect(order_row(staff_page, first)).to_be_visible(timeout=5_000)
        await expect(order_row(customer_page, first)).to_be_visible(timeout=5_000)

        for stop in (signal.SIGTERM, signal.SIGKILL):
            own.process.send_signal(stop)
            own.process.wait(15)
            for page in (staff_page, customer_page):
                await expect(page.locator("#connection")).to_have_text(
                    "reconnecting", timeout=10_000
                )
            for buyer in (*buyers, buyers[0]):
                order_id = (await gql(site, buyer, PLACE, sku=product))["placeOrder"]["orderId"]
                placed[order_id] = buyer
            ids = list(placed)
            await gql(site, placed[ids[-1]], PAY, id=ids[-1])
            await gql(site, placed[ids[-2]], CANCEL, id=ids[-2])
            if stop == signal.SIGTERM:
                await picture(staff_page, "reconnecting")
            own = start_server(site_database, tmp_path, port=port)
            late = (await gql(site, buyers[0], PLACE, sku=product))["placeOrder"]["orderId"]
            placed[late] = buyers[0]

            truth = await everything(site, staff, product, placed)
            for page in (staff_page, customer_page):
                await expect(page.locator("#connection")).to_have_text("connected", timeout=20_000)
            await staff_console_has(staff_page, product, truth)
            mine = {i: s for i, s in truth["statuses"].items() if placed[i] == buyers[0]}
            for order_id, status in mine.items():
                await expect(
                    order_row(customer_page, order_id).locator('[data-field="status"]')
                ).to_have_attribute("data-status", status, timeout=10_000)
            await expect(customer_page.locator("#orders-body tr")).to_have_count(len(mine))

        for page in (staff_page, customer_page):
            assert await page.evaluate("window.notReloaded === true"), "no reload"
            assert not page.errors  # type: ignore[attr-defined]
    finally:
        for page in (staff_page, customer_page):
            if page is not None:
                await page.context.close()
        stop_server(own)


async def everything(
    server: Server, staff: str, product: str, placed: dict[str, str]
) -> dict[str, Any]:
    """What the console must end with, read from the site."""
    statuses = {
        order_id: (await gql(server, staff, ORDER, id=order_id))["order"]["status"]
        for order_id in placed
    }
    return {
        "statuses": statuses,
        "sales": (await gql(server, staff, SALES))["salesDashboard"],
        "product": (await gql(server, staff, PRODUCT, sku=product))["product"],
        "sold": sum(2 for s in statuses.values() if s in ("PAID", "SHIPPED")),
    }


async def staff_console_has(page: Page, product: str, truth: dict[str, Any]) -> None:
    catching_up = 10_000
    for order_id, status in truth["statuses"].items():
        await expect(order_row(page, order_id).locator('[data-field="status"]')).to_have_attribute(
            "data-status", status, timeout=catching_up
        )
    sales = truth["sales"]
    for field in ("ordersPlaced", "ordersPaid", "ordersShipped", "ordersCancelled"):
        await expect(page.locator(f"#{field}")).to_have_text(str(sales[field]), timeout=catching_up)
    await expect(page.locator("#revenue")).to_have_text(
        f"€{float(sales['revenue']):,.2f}", timeout=catching_up
    )
    row = stock_row(page, product)
    for field in ("reserved", "available", "onHand"):
        await expect(row.locator(f'[data-field="{field}"]')).to_have_text(
            str(truth["product"][field]), timeout=catching_up
        )
    await expect(row.locator('[data-field="sold"]')).to_have_text(str(truth["sold"]))


@pytest.mark.parametrize("path", ["/", "/graphql", "/static/dashboard.js"])
async def test_pages_refuse_to_be_framed_or_to_talk_elsewhere(
    page: Page, site: Server, path: str
) -> None:
    response = await page.goto(site.url + path)
    assert response is not None and response.status == 200
    policy = await response.header_value("content-security-policy") or ""
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
