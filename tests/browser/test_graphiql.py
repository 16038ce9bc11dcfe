"""GraphiQL at GET /graphql for a browser, from the package's own assets: it runs a query over
HTTP and a subscription over graphql-ws, with the token from the header editor."""

from __future__ import annotations

import json
import uuid

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import gql, snap
from tests.kit.server import Server, token

REGISTER = """mutation($sku: String!) {
  registerProduct(sku: $sku, name: "Kite", unitPrice: "9.00", initialStock: 4) { position } }"""
RESTOCK = "mutation($sku: String!) { restockProduct(sku: $sku, quantity: 6) { position } }"


async def run(page: Page, text: str, shows: str) -> None:
    """Put `text` in the query editor and run it until the result shows `shows`. GraphiQL
    takes an edit into its state after a short debounce: a click before that runs the
    previous document (the default one, with two operations, only opens a chooser)."""
    await page.evaluate(
        "text => document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
        ".setValue(text)",
        text,
    )
    result = page.locator(".result-window")
    for _ in range(10):
        await page.wait_for_timeout(300)
        await page.keyboard.press("Escape")
        await page.locator(".graphiql-execute-button").click()
        try:
            await expect(result).to_contain_text(shows, timeout=2_000)
            return
        except AssertionError:
            continue
    await expect(result).to_contain_text(shows, timeout=1_000)


async def response_of(page: Page) -> dict:  # type: ignore[type-arg]
    text = await page.evaluate(
        "() => document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
    )
    return json.loads(text) if text.strip() else {}


async def test_a_browser_gets_graphiql_and_a_client_still_gets_json(site: Server) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(site.url + "/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql.js" in page.text
        api = await client.get(site.url + "/graphql", params={"query": "{ __typename }"})
        assert api.json() == {"data": {"__typename": "Query"}}
        asset = await client.get(site.url + "/static/graphiql.js")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(
            "text/javascript"
        )
        for probe in ("/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/"):
            assert (await client.get(site.url + probe)).status_code == 404


async def test_graphiql_runs_a_query_and_a_subscription(page: Page, site: Server) -> None:
    sku = "G-" + uuid.uuid4().hex[:8].upper()
    staff = token("gina", "staff")
    await gql(site, staff, REGISTER, sku=sku)
    # signed in on the dashboard first: GraphiQL takes the tab's token into its headers
    await page.goto(f"{site.url}/#token={staff}")
    await page.goto(site.url + "/graphql")
    await expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible(timeout=15_000)

    await run(page, f'{{ product(sku: "{sku}") {{ id onHand position }} }}', '"onHand": 4')
    assert (await response_of(page))["data"]["product"]["id"] == sku

    live = f'subscription {{ product(sku: "{sku}") {{ onHand available position }} }}'
    await run(page, live, '"available"')  # not in the query's result above
    await expect(page.locator(".result-window")).to_contain_text('"onHand": 4')
    restocked = (await gql(site, staff, RESTOCK, sku=sku))["restockProduct"]
    await expect(page.locator(".result-window")).to_contain_text('"onHand": 10', timeout=5_000)
    assert (await response_of(page))["data"]["product"]["position"] >= restocked["position"]
    await snap(page, "graphiql")
