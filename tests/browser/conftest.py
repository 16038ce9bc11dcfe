"""Browser tests: Debian's Chromium driven by Playwright (launched with the system executable:
no browser is ever downloaded), against a real `eventgraph serve`, and a Vite dev server for
a frontend on another origin. Screenshots of every page go to `artifacts/screenshots/`.

Without Chromium (or without `npm ci` in web/ for the Vite app) the tests are skipped, and
fail instead under CI (`CI` set), where `.ci/run` installs both."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.kit.database import fresh_database
from tests.kit.server import Server, free_port, start_server, stop_server

ROOT = Path(__file__).parents[2]
WEB = ROOT / "web"
ARTIFACTS = Path(os.environ.get("EVENTGRAPH_ARTIFACTS", ROOT / "artifacts")) / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def chromium() -> str:
    found = os.environ.get("EVENTGRAPH_CHROMIUM") or shutil.which("chromium")
    if not found:
        unavailable("no Chromium: apt-get install -y chromium (or set EVENTGRAPH_CHROMIUM)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context (its own sessionStorage); fails the test on a script error."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await context.close()
    assert not errors, f"the page threw: {errors}"


async def snap(page: Page, name: str) -> Path:
    """Keep a screenshot of `page` as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


VITE_PORT = free_port()
ALLOWED_ORIGIN = f"http://127.0.0.1:{VITE_PORT}"


@pytest.fixture(scope="module")
async def site_database(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def site(site_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the browser tests: its own database; the Vite app's origin allowed."""
    running = start_server(
        site_database, tmp_path_factory.mktemp("site"), EVENTGRAPH_CORS_ORIGINS=ALLOWED_ORIGIN
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def vite() -> Iterator[str]:
    """The example app of `web/vite-app` on a Vite dev server: a frontend on its own origin."""
    if not (WEB / "node_modules" / ".bin" / "vite").exists():
        unavailable("no Vite: run npm ci in web/")
    process = subprocess.Popen(
        [
            "npx",
            "vite",
            "vite-app",
            "--host",
            "127.0.0.1",
            "--port",
            str(VITE_PORT),
            "--strictPort",
        ],
        cwd=WEB,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # npx starts vite as a child: the whole group is stopped
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(ALLOWED_ORIGIN, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Vite dev server did not start")
            time.sleep(0.2)
        yield ALLOWED_ORIGIN
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


async def gql(server: Server, bearer: str, query: str, **variables: Any) -> Any:
    """Another client's request (not the page's): plain HTTP from the test."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            server.url + "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {bearer}"},
        )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]
