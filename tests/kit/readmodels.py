"""Every read model's rows, found through the registry (`projections.READ_MODELS`), never a
list kept by hand: what the convergence, rebuild and replay checks compare. A new read model
is in every such check from the moment it is registered.

A read model's tables are its views (what readers see, `readmodel.<view>`) and any other
table its projection creates for its own use (sales keeps each order's lines): those are
found in the catalogue, in the schema of its live generation, so nothing a projection
creates escapes the comparison, however it declares its tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from projections import all_projections
from projections.base import Projection
from projections.generations import schema_name

Rows = list[dict[str, Any]]


def _in_any_order(records: list[asyncpg.Record]) -> Rows:
    """The rows in an order that depends only on their content, not on how (or in which
    order) they were written: a table's first column need not be its key."""
    rows = [dict(r) for r in records]
    return sorted(rows, key=lambda row: repr(list(row.values())))


async def live_schema(conn: asyncpg.Connection | asyncpg.Pool, projection: Projection) -> str:
    """The schema of `projection`'s live generation (the one its views show)."""
    generation = await conn.fetchval(
        "SELECT generation FROM eventgraph.projections WHERE name = $1", projection.name
    )
    if generation is None:
        raise LookupError(f"read model {projection.name} is not set up")
    return schema_name(projection.name, generation)


async def tables_of(conn: asyncpg.Connection | asyncpg.Pool, projection: Projection) -> list[str]:
    """Every table `projection` created in its live generation: its views first, in the order
    it declares them, then the rest by name."""
    found = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
        await live_schema(conn, projection),
    )
    own = [r["tablename"] for r in found if r["tablename"] not in projection.views]
    return [*projection.views, *own]


def key_of(projection: Projection, table: str) -> str:
    """A table's name in a dump: a view by its own name (unique in schema `readmodel`), any
    other table as `<read model>.<table>`."""
    return table if table in projection.views else f"{projection.name}.{table}"


async def dump(
    conn: asyncpg.Connection | asyncpg.Pool, schema_of: Callable[[Projection], str] | None = None
) -> dict[str, Rows]:
    """Every table of every registered read model, with its rows. Unless `schema_of` is
    given, as the service holds them: views as readers see them, other tables from the live
    generation; with `schema_of`, the tables of those names in `schema_of(projection)` (a
    replay's scratch tables, made there by the projection's `create_tables`)."""
    found: dict[str, Rows] = {}
    for projection in all_projections():
        live = await live_schema(conn, projection)
        for table in await tables_of(conn, projection):
            if schema_of is not None:
                relation = f"{schema_of(projection)}.{table}"
            elif table in projection.views:
                relation = f"readmodel.{table}"
            else:
                relation = f"{live}.{table}"
            rows = await conn.fetch(f"SELECT * FROM {relation}")
            found[key_of(projection, table)] = _in_any_order(rows)
    return found
