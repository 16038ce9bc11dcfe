"""A real `eventgraph serve` process for tests, and GraphQL clients signed in as users."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from application.auth import mint_token
from eventstore.personal import new_master_key_text

SECRET = "test-secret-" + "x" * 32
MASTER_KEY = new_master_key_text()
"""Every test server's EVENTGRAPH_MASTER_KEY in this test process: the tests' own readers of
the log (tests/model/db.py) open what the servers seal."""


PORTS = "EVENTGRAPH_TEST_PORTS"
"""`LOW-HIGH` (both included, e.g. 20000-20999): the ports the servers started by the tests
listen on (`free_port`), so that test runs side by side on one machine can be kept apart.
Unset or empty: any free port the system picks."""


def port_range(value: str | None) -> range | None:
    """The ports `EVENTGRAPH_TEST_PORTS` allows; None when it is unset or empty."""
    if value is None or not value.strip():
        return None
    low, dash, high = value.strip().partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        first = last = 0
    if not dash or not 1 <= first <= last <= 65_535:
        raise ValueError(
            f"{PORTS}={value!r}: expected LOW-HIGH, two ports from 1 to 65535 with LOW at most"
            " HIGH (e.g. 20000-20999)"
        )
    return range(first, last + 1)


_handed: set[int] = set()
"""Ports `free_port` gave out in this process: a server may not be listening on one yet, so
one never handed out is preferred."""
_shuffle = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port nothing listens on now: inside EVENTGRAPH_TEST_PORTS when it is set (a port of
    the range never handed out before, if any is free), else any the system picks."""
    ports = port_range(os.environ.get(PORTS))
    if ports is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    fresh = [p for p in ports if p not in _handed]
    again = [p for p in ports if p in _handed]
    _shuffle.shuffle(fresh)
    _shuffle.shuffle(again)
    for port in fresh + again:
        if _bindable(port):
            _handed.add(port)
            return port
    raise RuntimeError(f"no free port in {PORTS}={os.environ[PORTS]}")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    read_url: str | None = None
    """The read side's database, when the server has its own (see `read_database`)."""


SEPARATE_READ = os.environ.get("EVENTGRAPH_TEST_SEPARATE_READ") == "1"
"""Run every test server with its read side on a database of its own (`{name}_r`), as
EVENTGRAPH_READ_DATABASE_URL allows: the suite's second layout."""


def read_database(database_url: str) -> str:
    """The read database that goes with `database_url` (created on first use; dropped
    with it by tests.kit.database.fresh_database)."""
    import asyncio
    import concurrent.futures
    import contextlib
    from urllib.parse import urlsplit

    import asyncpg

    from tests.kit.database import replace_database

    name = urlsplit(database_url).path.lstrip("/") + "_r"

    async def create() -> None:
        admin = await asyncpg.connect(database_url)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return replace_database(database_url, name)


def _spawn(
    port: int, database_url: str, tmp: Path, out: Any, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventgraph.cli", "serve", "--port", str(port)],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "EVENTGRAPH_JWT_SECRET": SECRET,
            "EVENTGRAPH_MASTER_KEY": MASTER_KEY,
            "EVENTGRAPH_DATA_DIR": str(tmp / "data"),
            "EVENTGRAPH_READ_WAIT_SECONDS": "1",
            # Tests count the events of product streams: the low-stock reaction (which adds
            # LowStockReached to them) is on only where a test asks for it.
            "EVENTGRAPH_LOW_STOCK_THRESHOLD": "0",
            **env,
        },
        stdout=out,
        stderr=subprocess.STDOUT,
    )


class PortTaken(RuntimeError):
    """Another process bound the port between `free_port` and the server's start."""


def start_server(database_url: str, tmp: Path, port: int | None = None, **env: str) -> Server:
    """A running `eventgraph serve` on `database_url` (on a free port unless given; on
    another if something else took that one first)."""
    read_url = env.get("EVENTGRAPH_READ_DATABASE_URL")
    if SEPARATE_READ and read_url is None:
        read_url = env["EVENTGRAPH_READ_DATABASE_URL"] = read_database(database_url)
    for attempt in range(3):
        try:
            return _started(port or free_port(), database_url, tmp, env, read_url)
        except PortTaken:
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")


def _started(
    port: int, database_url: str, tmp: Path, env: dict[str, str], read_url: str | None
) -> Server:
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = _spawn(port, database_url, tmp, out, env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text()
            if "address already in use" in text.lower():
                raise PortTaken(f"port {port} taken:\n{text}")
            raise RuntimeError(f"server exited:\n{text}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return Server(url, process, log, read_url)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def token(sub: str, role: str = "customer") -> str:
    return mint_token(SECRET, sub, role)  # type: ignore[arg-type]


class Api:
    """A GraphQL client signed in as one user."""

    def __init__(self, client: httpx.AsyncClient, url: str, bearer: str | None) -> None:
        self.client, self.url = client, url
        self.headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}

    async def raw(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            self.url + "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def ok(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self.raw(query, variables)
        assert not body.get("errors"), body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def error(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """The code of the single error the request must fail with."""
        body = await self.raw(query, variables)
        assert body.get("errors"), f"expected an error, got {body}"
        codes = {e["extensions"]["code"] for e in body["errors"]}
        assert len(codes) == 1, body["errors"]
        return str(codes.pop())


@dataclass
class Users:
    staff: Api
    alice: Api
    bob: Api
    anonymous: Api
    client: httpx.AsyncClient
    url: str

    def customer(self, name: str | None = None) -> Api:
        return Api(self.client, self.url, token(name or f"c-{uuid.uuid4().hex[:8]}"))


def new_sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"
