"""GraphiQL at GET /graphql for a browser, from the package's own assets: it runs a query over
HTTP and a subscription over graphql-ws, with the token from the header editor; it never sends
a placeholder as a token, and a subscription the server refuses (close 4403) shows the error
at once instead of a spinner."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, Request, WebSocket, expect

from application.auth import mint_token
from tests.browser.conftest import gql, snap
from tests.kit.server import Server, token

REGISTER = """mutation($sku: String!) {
  registerProduct(sku: $sku, name: "Kite", unitPrice: "9.00", initialStock: 4) { position } }"""
RESTOCK = "mutation($sku: String!) { restockProduct(sku: $sku, quantity: 6) { position } }"


async def run(page: Page, text: str, shows: str) -> float:
    """Put `text` in the query editor and run it until the result shows `shows` within 2 s
    of a click; answers how long that took. GraphiQL takes an edit into its state after a
    short debounce: a click before that runs the previous document (the default one, with
    two operations, only opens a chooser)."""
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
        started = time.monotonic()
        try:
            await expect(result).to_contain_text(shows, timeout=2_000)
            return time.monotonic() - started
        except AssertionError:
            continue
    await expect(result).to_contain_text(shows, timeout=1_000)
    return 0.0


async def set_headers(page: Page, text: str) -> None:
    """Put `text` in the Headers tab (the editor GraphiQL shows by default)."""
    await page.evaluate(
        "text => document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden)"
        " .CodeMirror').CodeMirror.setValue(text)",
        text,
    )


async def headers_text(page: Page) -> str:
    text: str = await page.evaluate(
        "() => document.querySelector('.graphiql-editor-tool .graphiql-editor:not(.hidden)"
        " .CodeMirror').CodeMirror.getValue()"
    )
    return text


async def open_graphiql(page: Page, server: Server) -> None:
    await page.goto(server.url + "/graphql")
    await expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible(timeout=15_000)


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
    await page.locator("dialog#confirm").get_by_role("button", name="Sign in as gina").click()
    await expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
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


def watch(page: Page) -> tuple[list[dict[str, str]], list[Any]]:
    """The headers of every POST to /graphql, and the payload of every connection_init."""
    posts: list[dict[str, str]] = []
    inits: list[Any] = []

    def on_request(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/graphql"):
            posts.append(request.headers)

    def on_socket(socket: WebSocket) -> None:
        def sent(frame: str | bytes) -> None:
            message = json.loads(frame)
            if message.get("type") == "connection_init":
                inits.append(message.get("payload") or {})

        socket.on("framesent", sent)

    page.on("request", on_request)
    page.on("websocket", on_socket)
    return posts, inits


async def test_a_fresh_tab_sends_no_placeholder_as_a_token(page: Page, site: Server) -> None:
    posts, inits = watch(page)
    await open_graphiql(page, site)
    assert "Bearer" not in await headers_text(page), "no placeholder in the Headers tab"

    await run(page, "{ salesDashboard { ordersPlaced } }", "UNAUTHENTICATED")
    assert posts and not [h for h in posts if "authorization" in h], posts

    # a placeholder typed in (or left over) is not sent either
    await set_headers(page, '{"Authorization": "Bearer <token from `eventgraph token`>"}')
    await run(page, "{ products(first: 1) { edges { node { sku } } } }", "UNAUTHENTICATED")
    assert not [h for h in posts if "authorization" in h], posts

    # a subscription without a token: the refusal is the result, at once
    took = await run(page, "subscription { salesDashboard { ordersPlaced } }", "UNAUTHENTICATED")
    assert inits and not [p for p in inits if "Authorization" in p], inits
    result = await response_of(page)
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Headers tab" in result["errors"][0]["message"]
    assert took < 2
    await snap(page, "graphiql-no-token")


async def test_a_refused_token_ends_a_subscription_with_the_error(page: Page, site: Server) -> None:
    posts, inits = watch(page)
    await open_graphiql(page, site)
    forged = mint_token("another-secret-" + "y" * 32, "mallory", "staff")
    await set_headers(page, json.dumps({"Authorization": f"Bearer {forged}"}))
    took = await run(page, "subscription { salesDashboard { ordersPlaced } }", "UNAUTHENTICATED")
    assert took < 2
    assert inits == [{"Authorization": f"Bearer {forged}"}], "sent once, not retried"
    result = await response_of(page)
    assert result["errors"][0]["extensions"]["closeCode"] == 4403
    await expect(page.locator(".graphiql-spinner")).to_have_count(0)

    # a real token typed in the Headers tab is sent, over HTTP and the WebSocket
    staff = token("gina", "staff")
    sku = "G-" + uuid.uuid4().hex[:8].upper()
    await gql(site, staff, REGISTER, sku=sku)
    await set_headers(page, json.dumps({"Authorization": f"Bearer {staff}"}))
    await run(page, f'{{ product(sku: "{sku}") {{ sku onHand }} }}', '"onHand": 4')
    assert posts[-1].get("authorization") == f"Bearer {staff}"
    await run(page, f'subscription {{ product(sku: "{sku}") {{ id onHand }} }}', '"id"')
    assert inits[-1] == {"Authorization": f"Bearer {staff}"}


async def test_graphiql_keeps_no_token_beyond_the_tab(page: Page, site: Server) -> None:
    """GraphiQL's own storage (history, tabs, headers) never puts a token in localStorage:
    after a query with a token in the headers, nothing there holds it, and a new tab of the
    same browser has neither the token nor a way to it, while it still gets the history."""
    staff = token("gina", "staff")
    await open_graphiql(page, site)
    await set_headers(page, json.dumps({"Authorization": f"Bearer {staff}"}))
    marker = f"kept{uuid.uuid4().hex[:6]}"
    await run(
        page, f"query {marker} {{ products(first: 1) {{ edges {{ node {{ sku }} }} }} }}", "edges"
    )
    await page.wait_for_timeout(1_000)  # GraphiQL stores its tabs after a debounce
    stored: dict[str, str] = await page.evaluate(
        "() => Object.fromEntries(Object.entries(localStorage))"
    )
    assert any(marker in value for value in stored.values()), stored  # history is kept
    leaked = {key: value for key, value in stored.items() if staff in value}
    assert not leaked, f"the token is in localStorage: {sorted(leaked)}"
    payload = staff.split(".")[1]
    assert not [key for key, value in stored.items() if payload in value]
    # this tab keeps its own history, token included, across a reload
    await page.reload()
    await expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible(timeout=15_000)
    assert staff in (await page.evaluate("sessionStorage.getItem('graphiql:queries')") or "")

    await page.close()  # the tab closes; another opens in the same browser
    fresh = await page.context.new_page()
    await open_graphiql(fresh, site)
    assert staff not in await headers_text(fresh)
    everything: str = await fresh.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])"
    )
    assert staff not in everything and payload not in everything
    assert marker in everything
