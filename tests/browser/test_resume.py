"""The client recipes of docs/frontend.md (`web/clients/apollo.js`, `web/clients/urql.js`,
on `web/clients/eventgraph.js`) in Chromium, from a Vite app on another origin: feeds that
miss nothing across server restarts (SIGTERM, then SIGKILL) and across token expiries, a
read right after a write that is never null, and a null answer filled by a pushed view."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from application.auth import mint_token
from tests.browser.conftest import ALLOWED_ORIGIN, gql, snap
from tests.kit.server import SECRET, Server, start_server, stop_server, token

LIBRARIES = ["apollo", "urql"]
REGISTER = """mutation($sku: String!) {
  registerProduct(sku: $sku, name: "Lamp", unitPrice: "2.00", initialStock: 100000) { position } }"""
PLACE = """mutation($sku: String!) {
  placeOrder(lines: [{ sku: $sku, quantity: 1 }]) { orderId position } }"""


def new_sku() -> str:
    return "R-" + uuid.uuid4().hex[:10].upper()


async def open_page(
    browser: Browser, vite: str, library: str, api: Server, bearer: str, **query: Any
) -> Page:
    context = await browser.new_context(viewport={"width": 1000, "height": 700})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.add_init_script(f"window.EVENTGRAPH_TOKEN = {json.dumps(bearer)}")
    search = "&".join(f"{k}={v}" for k, v in {"api": api.url, **query}.items())
    await page.goto(f"{vite}/{library}.html?{search}")
    await expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
    return page


async def feed_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate("window.feedState()")
    return state


async def until_feed_has(page: Page, orders: set[str], seconds: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        state = await feed_state(page)
        if orders <= set(state["orders"]):
            return state
        if asyncio.get_running_loop().time() > deadline:
            missing = orders - set(state["orders"])
            status = await page.locator("#status").text_content()
            error = await page.locator("#feed-error").text_content()
            pytest.fail(
                f"the feed never received {len(missing)} of {len(orders)} orders"
                f" (socket {status!r}, feed error {error!r})"
            )
        await asyncio.sleep(0.2)


def strictly_increasing(positions: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(positions))


@pytest.mark.parametrize("library", LIBRARIES)
async def test_feeds_miss_nothing_across_server_restarts(
    browser: Browser, vite: str, site: Server, site_database: str, library: str, tmp_path: Path
) -> None:
    """The pages talk to a server of their own, on the site's database; orders are placed
    through the site while that one is down (SIGTERM, then SIGKILL) and after it is back."""
    sku = new_sku()
    staff = token("restart-staff", "staff")
    customer = token(f"restart-{uuid.uuid4().hex[:6]}")
    start = (await gql(site, staff, REGISTER, sku=sku))["registerProduct"]["position"]
    own = start_server(site_database, tmp_path, EVENTGRAPH_CORS_ORIGINS=ALLOWED_ORIGIN)
    port = int(own.url.rsplit(":", 1)[1])
    try:
        staff_page = await open_page(browser, vite, library, own, staff, feed="orders", after=start)
        mine = await open_page(browser, vite, library, own, customer, feed="myOrders", after=start)
        placed = [(await gql(site, customer, PLACE, sku=sku))["placeOrder"]["orderId"]]
        await until_feed_has(mine, set(placed))
        for stop in (signal.SIGTERM, signal.SIGKILL):
            own.process.send_signal(stop)
            own.process.wait(15)
            await expect(mine.locator("#status")).not_to_have_text("connected", timeout=10_000)
            for _ in range(3):
                placed.append((await gql(site, customer, PLACE, sku=sku))["placeOrder"]["orderId"])
            own = start_server(
                site_database, tmp_path, port=port, EVENTGRAPH_CORS_ORIGINS=ALLOWED_ORIGIN
            )
            placed.append((await gql(site, customer, PLACE, sku=sku))["placeOrder"]["orderId"])
            for page in (staff_page, mine):
                await expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
                state = await until_feed_has(page, set(placed))
                assert strictly_increasing(state["positions"]), state["positions"]
        await snap(mine, f"resume-{library}")
        for page in (staff_page, mine):
            assert not page.errors  # type: ignore[attr-defined]
            await page.context.close()
    finally:
        stop_server(own)


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_short_lived_token_is_refreshed_and_the_feed_misses_nothing(
    browser: Browser, vite: str, site: Server, library: str
) -> None:
    sku = new_sku()
    staff = token("refresh-staff", "staff")
    name = f"refresh-{uuid.uuid4().hex[:6]}"
    start = (await gql(site, staff, REGISTER, sku=sku))["registerProduct"]["position"]
    minted: list[str] = []

    def refresh() -> str:
        minted.append(mint_token(SECRET, name, "customer", ttl_seconds=5))
        return minted[-1]

    context = await browser.new_context()
    await context.expose_function("refreshToken", refresh)
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await page.add_init_script(f"window.EVENTGRAPH_TOKEN = {json.dumps(refresh())}")
    await page.goto(f"{vite}/{library}.html?api={site.url}&sku={sku}&feed=myOrders&after={start}")
    await expect(page.locator("#status")).to_have_text("connected", timeout=20_000)

    long_lived = token(name)
    placed: list[str] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + 17  # three expiries of a 5 s token, and some
    while loop.time() < until:
        placed.append((await gql(site, long_lived, PLACE, sku=sku))["placeOrder"]["orderId"])
        await asyncio.sleep(0.5)
    try:
        state = await until_feed_has(page, set(placed), seconds=15)
    except BaseException:
        print("\n".join(console[-40:]))
        raise
    assert strictly_increasing(state["positions"])
    assert len(minted) >= 4, f"only {len(minted)} tokens: the first and at least three refreshes"
    await expect(page.locator("#status")).to_have_text("connected")
    await context.close()


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_read_right_after_a_write_is_never_null(
    page: Page, vite: str, site: Server, library: str
) -> None:
    await page.add_init_script(f"window.EVENTGRAPH_TOKEN = {json.dumps(token('rw', 'staff'))}")
    await page.goto(f"{vite}/{library}.html?api={site.url}&sku={new_sku()}&feed=orders")
    await expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
    answers = await page.evaluate(
        """async (skus) => {
             const answers = [];
             for (const sku of skus) answers.push(await window.registerThenRead(sku));
             return answers;
           }""",
        [new_sku() for _ in range(100)],
    )
    nulls = sum(1 for answer in answers if answer is None)
    assert nulls == 0, f"{nulls} of 100 reads right after their write answered null"


@pytest.mark.parametrize("library", LIBRARIES)
async def test_a_query_that_answered_null_is_filled_by_the_next_pushed_view(
    page: Page, vite: str, site: Server, library: str
) -> None:
    sku = new_sku()
    staff = token("filler", "staff")
    await page.add_init_script(f"window.EVENTGRAPH_TOKEN = {json.dumps(staff)}")
    await page.goto(f"{vite}/{library}.html?api={site.url}&sku={sku}&feed=orders")
    watched = page.locator("#watched")
    await expect(watched).to_have_attribute("data-state", "null", timeout=20_000)
    await gql(site, staff, REGISTER, sku=sku)
    await expect(watched).to_contain_text('"onHand":100000', timeout=10_000)
