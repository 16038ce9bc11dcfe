"""The wishlist in the console at `/`, in a real browser against a real server: a customer
wishes products from the shop and their Wishlist panel follows live, through the `myWishlist`
live view, what they wished and what staff do to those products' stock meanwhile; staff see
the most wished products with their counts, live; refusals (the 50-product limit, a list
changed in another tab) read as sentences with the code under Details."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.browser.conftest import gql, snap
from tests.browser.test_dashboard import RESTOCK, open_console, signed_in, sku
from tests.kit.server import Server, token

LIVE = 10_000  # ms: generous on a busy machine; every wait is on a condition
REGISTER = """mutation($sku: String!, $name: String!, $price: Decimal! = "24.50", $stock: Int! = 20) {
  registerProduct(sku: $sku, name: $name, unitPrice: $price, initialStock: $stock) { position } }"""
ADD = "mutation($sku: String!) { addToWishlist(sku: $sku) { position wishlist { items { sku } } } }"
REMOVE = """mutation($sku: String!) {
  removeFromWishlist(sku: $sku) { position wishlist { items { sku } } } }"""
MINE = "{ myWishlist { items { sku available } } }"
STAFF = token("stella", "staff")


async def products(site: Server, *names: str, price: str = "24.50") -> list[str]:
    """Register a product per name through another client; answers their skus once the
    products read model has them all (a page opened next reads them)."""
    skus = [sku() for _ in names]
    position = 0
    for code, name in zip(skus, names, strict=True):
        data = await gql(site, STAFF, REGISTER, sku=code, name=name, price=price)
        position = data["registerProduct"]["position"]
    await gql(
        site,
        STAFF,
        "query($at: Position) { products(first: 1, atLeast: $at) { pageInfo { hasNextPage } } }",
        at=position,
    )
    return skus


def customer() -> str:
    return f"wendy-{uuid.uuid4().hex[:6]}"


def card(page: Page, product: str) -> Any:
    return page.locator(f'#shop-list li[data-sku="{product}"]')


def wished(page: Page, product: str) -> Any:
    return page.locator(f'#wishlist-list li[data-sku="{product}"]')


async def panel_has(page: Page, *skus: str) -> None:
    """The Wishlist panel lists exactly these products, in this order."""
    rows = page.locator("#wishlist-list li")
    await expect(rows).to_have_count(len(skus), timeout=LIVE)
    for i, code in enumerate(skus):
        await expect(rows.nth(i)).to_have_attribute("data-sku", code)


async def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIVE / 1000
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def errors_of(site: Server, bearer: str, query: str, **variables: Any) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            site.url + "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {bearer}"},
        )
    return [e["extensions"]["code"] for e in response.json().get("errors", [])]


async def test_a_customer_wishes_two_products_and_the_panel_follows_stock_live(
    page: Page, site: Server
) -> None:
    lamp, fan = await products(site, "Reading lamp", "Desk fan")
    name = customer()
    pushed: list[dict[str, Any]] = []  # every myWishlist view the server pushed to the page

    def frames(message: str | bytes) -> None:
        body = json.loads(message)
        view = (body.get("payload") or {}).get("data", {}) or {}
        if body.get("type") == "next" and "myWishlist" in view:
            pushed.append(view["myWishlist"])

    page.on("websocket", lambda ws: ws.on("framereceived", frames))
    await signed_in(page, site, name, "customer")
    await page.evaluate("window.notReloaded = true")
    await expect(page.locator("#wishlist-empty")).to_be_visible(timeout=LIVE)
    await expect(page.locator("#most-wished")).to_be_hidden()  # staff only

    toggle = card(page, lamp).get_by_role("button", name="Wish for Reading lamp", exact=True)
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await toggle.click()
    await expect(page.locator("#notice")).to_have_text("Added Reading lamp to your wishlist")
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await expect(toggle).to_have_text("♥ Wished")
    await card(page, fan).get_by_role("button", name="Wish for Desk fan", exact=True).click()
    await panel_has(page, lamp, fan)
    await expect(wished(page, lamp).locator('[data-field="name"]')).to_have_text("Reading lamp")
    await expect(wished(page, lamp).locator('[data-field="price"]')).to_have_text("€24.50")
    await expect(wished(page, lamp).locator('[data-field="available"]')).to_have_text("20 in stock")
    await expect(page.locator("#wishlist-count")).to_have_text("2 products")
    await expect(page.locator("#wishlist-empty")).to_be_hidden()
    mine = (await gql(site, token(name), MINE))["myWishlist"]["items"]
    assert [item["sku"] for item in mine] == [lamp, fan]

    # staff restock in another window: the wished product's stock moves on the page, pushed
    # by the wishlist's own live view
    await gql(site, STAFF, RESTOCK, sku=lamp)
    available = wished(page, lamp).locator('[data-field="available"]')
    await expect(available).to_have_text("23 in stock", timeout=LIVE)
    await eventually(
        lambda: any(
            [(i["sku"], i["available"]) for i in view["items"]] == [(lamp, 23), (fan, 20)]
            for view in pushed
        ),
        "myWishlist itself pushed the new stock",
    )
    # ...and so does a customer's order taking the last units of the other one
    await gql(
        site,
        token(customer()),
        "mutation($sku: String!) { placeOrder(lines: [{ sku: $sku, quantity: 19 }]) { position } }",
        sku=fan,
    )
    await expect(wished(page, fan).locator('[data-field="available"]')).to_have_text(
        "Only 1 left", timeout=LIVE
    )
    await snap(page, "wishlist-customer")

    # the same customer adds one in another tab: the panel shows it by itself
    third = (await products(site, "Bookend"))[0]
    await gql(site, token(name), ADD, sku=third)
    await panel_has(page, lamp, fan, third)
    await expect(
        card(page, third).get_by_role("button", name="Wish for Bookend", exact=True)
    ).to_have_attribute("aria-pressed", "true")

    # removing from the panel and from the card
    await page.get_by_role("button", name="Remove Reading lamp from my wishlist").click()
    await expect(page.locator("#notice")).to_have_text("Removed Reading lamp from your wishlist")
    await panel_has(page, fan, third)
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await expect(toggle).to_have_text("♡ Wish")
    await card(page, fan).get_by_role("button", name="Wish for Desk fan", exact=True).click()
    await gql(site, token(name), REMOVE, sku=third)  # and in the other tab
    await panel_has(page)
    await expect(page.locator("#wishlist-empty")).to_be_visible()
    assert (await gql(site, token(name), MINE))["myWishlist"]["items"] == []

    # a shop, not a developer page
    text = await page.locator("#wishlist").inner_text()
    assert lamp not in text and "position" not in text.lower()
    assert await page.evaluate("window.notReloaded === true"), "no reload"


async def test_staff_see_the_most_wished_products_with_their_counts_live(
    browser: Browser, site: Server
) -> None:
    often, sometimes = await products(site, "Wall clock", "Door mat")
    buyers = [token(customer()) for _ in range(3)]
    for bearer in buyers:
        await gql(site, bearer, ADD, sku=often)
    await gql(site, buyers[0], ADD, sku=sometimes)
    await gql(site, buyers[1], ADD, sku=sometimes)
    staff = await open_console(browser, site, "stella", "staff")
    try:
        ranked = staff.locator("#most-wished-list li")
        counted = staff.locator(f'#most-wished-list li[data-sku="{often}"] [data-field="wishes"]')
        other = staff.locator(f'#most-wished-list li[data-sku="{sometimes}"] [data-field="wishes"]')
        await expect(counted).to_have_text("3 wishes", timeout=LIVE)
        await expect(other).to_have_text("2 wishes")
        await expect(ranked.nth(0)).to_have_attribute("data-sku", often)
        await expect(ranked.nth(0).locator("strong")).to_have_text("Wall clock")
        await expect(staff.locator("#wishlist")).to_be_hidden()  # a customer's panel
        await expect(staff.get_by_role("button", name="Wish for Wall clock")).to_have_count(0)

        # customers change their lists while staff watch: the counts follow without a reload
        await gql(site, buyers[2], ADD, sku=sometimes)
        await gql(site, token(customer()), ADD, sku=sometimes)
        await expect(other).to_have_text("4 wishes", timeout=LIVE)
        await expect(ranked.nth(0)).to_have_attribute("data-sku", sometimes)
        await gql(site, buyers[0], REMOVE, sku=often)
        await expect(counted).to_have_text("2 wishes", timeout=LIVE)
        await snap(staff, "wishlist-most-wished")
        assert await staff.evaluate("window.notReloaded === true"), "no reload"
        assert not staff.errors  # type: ignore[attr-defined]
    finally:
        await staff.context.close()


async def test_a_full_wishlist_reads_as_a_sentence_and_one_removed_makes_room(
    page: Page, site: Server
) -> None:
    names = [f"Print no. {n:02d}" for n in range(1, 52)]
    skus = await products(site, *names, price="5.00")
    name = customer()
    for code in skus[:50]:
        await gql(site, token(name), ADD, sku=code)
    assert await errors_of(site, token(name), ADD, sku=skus[50]) == ["BAD_USER_INPUT"]
    await signed_in(page, site, name, "customer")
    await expect(page.locator("#wishlist-count")).to_have_text("50 products", timeout=LIVE)

    last = card(page, skus[50]).get_by_role("button", name=f"Wish for {names[50]}", exact=True)
    await last.click()
    error = page.locator("#last-error")
    await expect(error.locator("#error-text")).to_have_text(
        "Your wishlist is full: it holds at most 50 products."
        f" Remove one to make room for {names[50]}"
    )
    await expect(error.locator("#error-code")).to_be_hidden()  # the code: on demand
    await error.get_by_text("Details").click()
    await expect(error.locator("#error-code")).to_have_text("BAD_USER_INPUT")
    await expect(last).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#wishlist-count")).to_have_text("50 products")
    await snap(page, "wishlist-full")

    await page.get_by_role("button", name=f"Remove {names[0]} from my wishlist").click()
    await expect(page.locator("#wishlist-count")).to_have_text("49 products")
    await last.click()
    await expect(last).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#wishlist-list li").last).to_have_attribute("data-sku", skus[50])


async def test_a_list_changed_elsewhere_reads_as_a_sentence_and_is_read_again(
    page: Page, site: Server
) -> None:
    """The page never hears of changes to the list made elsewhere (the test holds back every
    myWishlist push after the first view), so it offers to add what is already on the list
    and to remove what no longer is: the server refuses, and the page reads the list again."""
    (vase,) = await products(site, "Vase")
    name = customer()

    def only_the_first_view(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        views = 0

        def from_server(message: str | bytes) -> None:
            nonlocal views
            if "myWishlist" in str(message):
                views += 1
                if views > 1:
                    return
            ws.send(message)

        server.on_message(from_server)

    await page.route_web_socket(re.compile(r"/graphql$"), only_the_first_view)
    await signed_in(page, site, name, "customer")
    toggle = card(page, vase).get_by_role("button", name="Wish for Vase", exact=True)
    await expect(toggle).to_be_enabled(timeout=LIVE)  # the first (empty) view arrived
    await gql(site, token(name), ADD, sku=vase)  # another tab
    await toggle.click()
    await expect(page.locator("#error-text")).to_have_text("Vase is already on your wishlist")
    await expect(page.locator("#error-code")).to_have_text("ALREADY_EXISTS")
    await expect(toggle).to_have_attribute("aria-pressed", "true")  # read again
    await expect(wished(page, vase)).to_be_visible()

    await gql(site, token(name), REMOVE, sku=vase)  # another tab again
    await page.get_by_role("button", name="Remove Vase from my wishlist").click()
    await expect(page.locator("#error-text")).to_have_text("Vase was not on your wishlist any more")
    await expect(page.locator("#error-code")).to_have_text("NOT_FOUND")
    await expect(wished(page, vase)).to_have_count(0)
    await expect(toggle).to_have_attribute("aria-pressed", "false")

    # the rest of the contract's refusals, as any client meets them
    assert await errors_of(site, token(name), ADD, sku="NO-SUCH-SKU") == ["NOT_FOUND"]
    assert await errors_of(site, token(name), REMOVE, sku=vase) == ["NOT_FOUND"]
    assert await errors_of(site, STAFF, ADD, sku=vase) == ["FORBIDDEN"]
    assert await errors_of(site, token(name), "{ mostWished { sku wishes } }") == ["FORBIDDEN"]
