"""The client set-ups of docs/frontend.md, run in a real browser from the Vite app on another
origin: Apollo Client 4 and urql (Graphcache), each over HTTP and graphql-ws. A query answer
that was read before a subscription pushed a newer view, and arrives after it, must not
overwrite the newer view in the client's cache: with the guard of the guide it does not,
without it it does (which shows the test can see the difference)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import gql, snap
from tests.kit.server import Server, token

REGISTER = """mutation($sku: String!) {
  registerProduct(sku: $sku, name: "Drum", unitPrice: "80.00", initialStock: 1) { position } }"""
RESTOCK = "mutation($sku: String!) { restockProduct(sku: $sku, quantity: 5) { position } }"


@pytest.mark.parametrize("guard", ["on", "off"])
@pytest.mark.parametrize("library", ["apollo", "urql"])
async def test_an_older_answer_never_overwrites_a_newer_pushed_view(
    page: Page, site: Server, vite: str, library: str, guard: str
) -> None:
    sku = "L-" + uuid.uuid4().hex[:8].upper()
    staff = token("lena", "staff")
    await gql(site, staff, REGISTER, sku=sku)
    await page.add_init_script(f"window.EVENTGRAPH_TOKEN = {json.dumps(staff)}")
    await page.goto(f"{vite}/{library}.html?api={site.url}&sku={sku}&guard={guard}")
    watched = page.locator("#watched")
    await expect(watched).to_contain_text('"onHand":1', timeout=20_000)

    # The next query is answered at once (onHand 1) but delivered only after a newer view
    # (onHand 6) was pushed over the WebSocket.
    answered, deliver = asyncio.Event(), asyncio.Event()

    async def late(route: Route) -> None:
        if route.request.method == "OPTIONS" or answered.is_set():
            await route.continue_()
            return
        response = await route.fetch()
        answered.set()
        await deliver.wait()
        await route.fulfill(response=response)

    await page.route(f"{site.url}/graphql**", late)  # urql queries over GET, Apollo over POST
    refetch = asyncio.ensure_future(page.evaluate("window.refetchProduct()"))
    await asyncio.wait_for(answered.wait(), 10)
    await gql(site, staff, RESTOCK, sku=sku)
    await expect(watched).to_contain_text('"onHand":6', timeout=5_000)
    deliver.set()
    await refetch
    await page.wait_for_timeout(500)  # time for the late answer to reach the cache and the view

    shown = json.loads(await watched.text_content() or "{}")
    if guard == "on":
        assert shown["onHand"] == 6, "the older answer overwrote the newer view"
        await snap(page, f"client-{library}")
    else:
        assert shown["onHand"] == 1, "without the guard the late answer wins (the problem)"
