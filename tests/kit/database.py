"""Test databases: a fresh, migrated database on a server (dropped afterwards), and a reset
that empties one between tests."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg

from eventstore.migrate import migrate


def replace_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new, migrated database on the test server, dropped afterwards."""
    name = f"eventgraph_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = replace_database(server_url, name)
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
            await admin.execute(f"DROP DATABASE IF EXISTS {name}_r WITH (FORCE)")
        finally:
            await admin.close()


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


async def plaintext_in(
    conn: asyncpg.Connection, needles: Sequence[str], schemas: str = "%"
) -> list[str]:
    """Each of `needles` found in any row of any table of the database but the catalogue's
    (of the schemas LIKE `schemas`), written as text or as hex (bytea, or text hex-encoded):
    which table, which needle."""
    tables = await conn.fetch(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND schemaname LIKE $1",
        schemas,
    )
    found = []
    for row in tables:
        text = await conn.fetchval(
            f"SELECT coalesce(string_agg(x::text, ' '), '') FROM {row['t']} x"
        )
        lowered = text.lower()
        for needle in needles:
            if needle in text or needle.encode().hex() in lowered:
                found.append(f"{row['t']}: {needle}")
    return found
