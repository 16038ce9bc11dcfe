"""The shared running server of the end-to-end tests, on its own database, and its users.

Tests share the server and its database, so each uses its own skus and customers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.kit.database import fresh_database
from tests.kit.server import Api, Server, Users, start_server, stop_server, token

__all__ = ["Api", "Server", "Users", "start_server", "stop_server", "token"]


@pytest.fixture(scope="session")
async def server_database_url(server_url: str) -> AsyncIterator[str]:
    """The shared server's own database: never reset under it."""
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
def server(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(server_database_url, tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running)
    errors = [line for line in running.log.read_text().splitlines() if " ERROR " in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:20])


@pytest.fixture
async def users(server: Server) -> AsyncIterator[Users]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        run = uuid.uuid4().hex[:6]
        yield Users(
            staff=Api(client, server.url, token(f"staff-{run}", "staff")),
            alice=Api(client, server.url, token(f"alice-{run}")),
            bob=Api(client, server.url, token(f"bob-{run}")),
            anonymous=Api(client, server.url, None),
            client=client,
            url=server.url,
        )
