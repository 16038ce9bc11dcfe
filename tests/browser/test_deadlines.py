"""Order deadlines in the console at `/`, in a real browser against a real server with a
payment window of a few seconds and a low-stock threshold of 3: a customer's unpaid order
counts down (by the server's clock, not a computer's that is off), turns EXPIRED on the page
by itself, and staff see the expiry counted and the product flagged low on stock while it
was, all live; paying once time is up reads as a sentence with the code under Details."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.browser.conftest import gql, snap
from tests.browser.test_dashboard import order_row, register, signed_in, sku, stock_row
from tests.kit.server import Server, start_server, stop_server, token

WINDOW_SECONDS = 6
THRESHOLD = 3
LIVE = 20_000  # ms: generous on a busy machine; every wait is on a condition
COUNTDOWN = re.compile(r"^Pay within (\d+):(\d\d)$")


@pytest.fixture(scope="module")
def deadlines_site(
    site_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        site_database,
        tmp_path_factory.mktemp("deadlines"),
        EVENTGRAPH_PAYMENT_WINDOW_SECONDS=str(WINDOW_SECONDS),
        EVENTGRAPH_LOW_STOCK_THRESHOLD=str(THRESHOLD),
    )
    yield running
    stop_server(running)


async def staff_console(browser: Browser, site: Server) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    await signed_in(page, site, "stella", "staff")
    return page


def seconds_left(text: str) -> int:
    found = COUNTDOWN.match(text)
    assert found, f"not a countdown: {text!r}"
    return int(found[1]) * 60 + int(found[2])


async def buy_one(page: Page, product: str) -> str:
    """Click Buy in the shop; answers the new order's id."""
    rows = page.locator("#orders-body tr")
    before = await rows.count()
    await (
        page.locator(f'#shop-list li[data-sku="{product}"]')
        .get_by_role("button", name="Buy one Lamp")
        .click()
    )
    await expect(page.locator("#notice")).to_contain_text("Order placed", timeout=LIVE)
    await expect(rows).to_have_count(before + 1)
    return await rows.first.get_attribute("data-order") or ""


async def test_an_unpaid_order_counts_down_then_expires_live_and_staff_see_it(
    browser: Browser, page: Page, deadlines_site: Server
) -> None:
    site = deadlines_site
    product = sku()
    await register(site, token("stella", "staff"), sku=product, stock=THRESHOLD)
    staff = await staff_console(browser, site)
    try:
        await expect(staff.locator("#ordersExpired")).to_have_text("0")
        alerts = stock_row(staff, product).locator('[data-field="alerts"]')
        await expect(stock_row(staff, product).locator('[data-field="available"]')).to_have_text(
            str(THRESHOLD)
        )
        await expect(alerts).to_have_text("")

        # This computer's clock is ten minutes fast: the countdown follows the server's.
        await page.add_init_script("{ const now = Date.now; Date.now = () => now() + 600000; }")
        await signed_in(page, site, "cora", "customer")
        await page.evaluate("window.notReloaded = true")
        order_id = await buy_one(page, product)
        row = order_row(page, order_id)
        status = row.locator('[data-field="status"]')
        countdown = row.locator('[data-field="countdown"]')
        await expect(status).to_have_attribute("data-status", "PLACED")
        await expect(countdown).to_have_text(COUNTDOWN)
        first = (await countdown.text_content()) or ""
        assert 0 < seconds_left(first) <= WINDOW_SECONDS
        await expect(countdown).not_to_have_text(first, timeout=LIVE)
        later = (await countdown.text_content()) or ""
        if later != "expiring…":
            assert seconds_left(later) < seconds_left(first), (first, later)
        await expect(row.get_by_role("button", name="Pay")).to_be_enabled()

        # the stock fell below the threshold: flagged in the shop and, with since when, for staff
        card = page.locator(f'#shop-list li[data-sku="{product}"]')
        await expect(card.locator('[data-field="low-stock"]')).to_have_text(
            "Low on stock", timeout=LIVE
        )
        await expect(alerts.locator('[data-field="low-stock"]')).to_have_text(
            "Low on stock", timeout=LIVE
        )
        await expect(alerts.locator('[data-field="low-since"]')).to_have_text(
            re.compile(r"^since \d")
        )
        await expect(order_row(staff, order_id).locator('[data-field="countdown"]')).to_have_text(
            re.compile(r"^(Expires in \d+:\d\d|expiring…)$")
        )
        await snap(page, "deadlines-counting-down")
        await snap(staff, "deadlines-low-stock")

        # the deadline passes: EXPIRED arrives by itself, Pay is gone, the stock is back
        await expect(status).to_have_attribute("data-status", "EXPIRED", timeout=LIVE)
        await expect(status).to_have_text("Expired")
        await expect(row.locator('[data-field="status-note"]')).to_have_text(
            "Not paid in time: the items went back on sale"
        )
        await expect(countdown).to_have_count(0)
        await expect(row.get_by_role("button")).to_have_text(["Copy"])  # no Pay, no Cancel
        await expect(card.locator('[data-field="low-stock"]')).to_have_count(0, timeout=LIVE)
        assert await page.evaluate("window.notReloaded === true"), "no reload"

        staff_status = order_row(staff, order_id).locator('[data-field="status"]')
        await expect(staff_status).to_have_attribute("data-status", "EXPIRED", timeout=LIVE)
        await expect(staff.locator("#ordersExpired")).to_have_text("1", timeout=LIVE)
        await expect(stock_row(staff, product).locator('[data-field="available"]')).to_have_text(
            str(THRESHOLD), timeout=LIVE
        )
        await expect(alerts).to_have_text("", timeout=LIVE)  # back to the threshold: unflagged
        await snap(page, "deadlines-expired")
        assert not staff.errors  # type: ignore[attr-defined]
    finally:
        await staff.context.close()


async def test_paying_after_the_countdown_ran_out_reads_as_a_sentence(
    page: Page, deadlines_site: Server
) -> None:
    """The page never hears of the expiry (the test holds back the pushes that carry it), so
    it still offers Pay once its countdown reads "expiring…": the server refuses, and the page
    reads the order again."""
    site = deadlines_site
    product = sku()
    await register(site, token("stella", "staff"), sku=product, stock=10)

    def hold_back_expiries(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if '"EXPIRED"' not in str(message):
                ws.send(message)

        server.on_message(from_server)

    await page.route_web_socket(re.compile(r"/graphql$"), hold_back_expiries)
    await signed_in(page, site, "dina", "customer")
    order_id = await buy_one(page, product)
    row = order_row(page, order_id)
    await expect(row.locator('[data-field="countdown"]')).to_have_text(COUNTDOWN)
    await expect(row.locator('[data-field="countdown"]')).to_have_text("expiring…", timeout=LIVE)
    await expired_on_the_server(site, order_id)
    await row.get_by_role("button", name="Pay").click()
    await expect(page.locator("#error-text")).to_have_text(
        f"Order {order_id[:8]}… was not paid in time: it has expired and its items went back on sale",
        timeout=LIVE,
    )
    await expect(page.locator("#error-code")).to_have_text("INVALID_STATE")
    await expect(page.locator("#error-code")).to_be_hidden()  # under Details
    await page.locator("#error-details summary").click()
    await expect(page.locator("#error-code")).to_be_visible()
    # refused for its state, the order is read again: EXPIRED, though no push said so
    await expect(row.locator('[data-field="status"]')).to_have_attribute(
        "data-status", "EXPIRED", timeout=LIVE
    )
    await expect(row.get_by_role("button", name="Pay")).to_have_count(0)
    await snap(page, "deadlines-too-late")


async def expired_on_the_server(site: Server, order_id: str) -> None:
    """Wait until the server's orders read model has the order EXPIRED."""
    deadline = time.monotonic() + LIVE / 1000
    query = "query($id: ID!) { order(id: $id) { status } }"
    while (await gql(site, token("stella", "staff"), query, id=order_id))["order"]["status"] != (
        "EXPIRED"
    ):
        assert time.monotonic() < deadline, "the order never expired on the server"
        await asyncio.sleep(0.1)
