"""A frontend on its own dev server (the Vite app of web/vite-app, another origin) uses the
API directly, with no proxy, when its origin is allowed (EVENTGRAPH_CORS_ORIGINS); from an
origin that is not allowed, the browser can neither query nor mutate nor subscribe."""

from __future__ import annotations

import json
import uuid

from playwright.async_api import Page, expect

from tests.browser.conftest import gql, snap
from tests.kit.server import Server, token

REGISTER = """mutation($sku: String!) {
  registerProduct(sku: $sku, name: "Vase", unitPrice: "30.00", initialStock: 1) { position } }"""
ON_HAND = "query($sku: String!) { product(sku: $sku) { onHand } }"


async def open_app(page: Page, origin: str, site: Server, sku: str) -> None:
    await page.add_init_script(f"window.EVENTGRAPH_TOKEN = {json.dumps(token('vic', 'staff'))}")
    await page.goto(f"{origin}/?api={site.url}&sku={sku}")


async def test_an_allowed_origin_queries_mutates_and_subscribes(
    page: Page, site: Server, vite: str
) -> None:
    sku = "V-" + uuid.uuid4().hex[:8].upper()
    await gql(site, token("vic", "staff"), REGISTER, sku=sku)
    await open_app(page, vite, site, sku)
    for part in ("query", "mutation", "subscription"):
        await expect(page.locator(f"#{part}")).to_have_attribute("data-state", "ok", timeout=10_000)
    views = json.loads(await page.locator("#subscription").text_content() or "[]")
    assert [v["onHand"] for v in views] == [1, 6]
    await snap(page, "vite-app-allowed")


async def test_an_origin_not_allowed_can_do_nothing(page: Page, site: Server, vite: str) -> None:
    sku = "V-" + uuid.uuid4().hex[:8].upper()
    staff = token("vic", "staff")
    await gql(site, staff, REGISTER, sku=sku)
    other = vite.replace("127.0.0.1", "localhost")  # the same app, an origin not allowed
    await open_app(page, other, site, sku)
    for part in ("query", "mutation", "subscription"):
        await expect(page.locator(f"#{part}")).to_have_attribute(
            "data-state", "error", timeout=10_000
        )
    assert (await gql(site, staff, ON_HAND, sku=sku))["product"]["onHand"] == 1
    await snap(page, "vite-app-refused")
