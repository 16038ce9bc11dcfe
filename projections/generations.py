"""Generations of a projection's tables: each lives in its own schema, and readers see the
active one through views in schema `readmodel`."""

from __future__ import annotations

import asyncpg

from projections.base import Projection

SETUP_LOCK = 0x6576_6772_0002  # serialises creating projections across processes


def schema_name(name: str, generation: int) -> str:
    return f"rm_{name}_g{generation}"


async def create_generation(
    conn: asyncpg.Connection, projection: Projection, generation: int
) -> str:
    schema = schema_name(projection.name, generation)
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(projection.create_tables(schema))
    indexes = projection.create_indexes(schema)
    if indexes:
        await conn.execute(indexes)
    return schema


async def point_views(conn: asyncpg.Connection, projection: Projection, schema: str) -> None:
    """Inside the caller's transaction: readers see `schema` from its commit on."""
    for view in projection.views:
        await conn.execute(f"DROP VIEW IF EXISTS readmodel.{view}")
        await conn.execute(f"CREATE VIEW readmodel.{view} AS SELECT * FROM {schema}.{view}")


_COLUMNS = """
SELECT table_schema, array_agg(column_name::text ORDER BY ordinal_position) AS columns
  FROM information_schema.columns
 WHERE (table_schema, table_name) IN (('readmodel', $1), ($2, $1))
 GROUP BY table_schema
"""


async def widen_views(conn: asyncpg.Connection, projection: Projection, schema: str) -> None:
    """A column added to a live generation (by `create_indexes`: `ADD COLUMN IF NOT EXISTS`)
    joins its view in `readmodel`, which lists the columns it was created with. Views already
    showing every column are left alone (replacing one locks it)."""
    for view in projection.views:
        found = {r["table_schema"]: r["columns"] for r in await conn.fetch(_COLUMNS, view, schema)}
        if found.get(schema) and found.get("readmodel") != found[schema]:
            await conn.execute(
                f"CREATE OR REPLACE VIEW readmodel.{view} AS SELECT * FROM {schema}.{view}"
            )


async def ensure_projection(conn: asyncpg.Connection, projection: Projection) -> None:
    """Create the projection's first generation, its views and its checkpoint, once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETUP_LOCK)
        generation = await conn.fetchval(
            "SELECT generation FROM eventgraph.projections WHERE name = $1", projection.name
        )
        if generation is not None:
            schema = schema_name(projection.name, generation)
            indexes = projection.create_indexes(schema)
            if indexes:
                await conn.execute(indexes)
            await widen_views(conn, projection, schema)
            return
        schema = await create_generation(conn, projection, 1)
        await point_views(conn, projection, schema)
        await conn.execute(
            "INSERT INTO eventgraph.projections (name, version, generation) VALUES ($1, $2, 1)",
            projection.name,
            projection.version,
        )
