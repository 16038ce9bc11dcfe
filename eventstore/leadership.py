"""One leader per role among processes: a session advisory lock, held for as long as the
connection that took it lives, so a leader that dies (or loses its connection) hands over
to a standby at once, with nothing to clean up."""

from __future__ import annotations

import asyncio

import asyncpg


async def wait_to_lead(conn: asyncpg.Connection, role: str, standby_interval: float) -> None:
    """Return once this connection holds the lock for `role` (e.g. `eventgraph.projection.
    products`), trying again every `standby_interval` seconds until then."""
    while not await conn.fetchval(  # noqa: ASYNC110 - polling Postgres
        "SELECT pg_try_advisory_lock(hashtext($1))", role
    ):
        await asyncio.sleep(standby_interval)
