"""Queries over the read models, through the views in schema `readmodel`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[asyncpg.Record]
    has_next: bool


class ReadModels:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def product(self, sku: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow("SELECT * FROM readmodel.products WHERE sku = $1", sku)

    async def products(self, after_sku: str | None, limit: int) -> Page:
        rows = await self._pool.fetch(
            "SELECT * FROM readmodel.products WHERE $1::text IS NULL OR sku > $1"
            " ORDER BY sku LIMIT $2",
            after_sku,
            limit + 1,
        )
        return Page(rows[:limit], len(rows) > limit)

    async def order(self, order_id: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            "SELECT * FROM readmodel.orders WHERE order_id = $1", order_id
        )

    async def orders(
        self,
        customer_id: str | None,
        status: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> Page:
        """Newest first; `before` is the (placed_at, order_id) of the last row already seen."""
        clauses: list[str] = []
        args: list[object] = []
        if customer_id is not None:
            args.append(customer_id)
            clauses.append(f"customer_id = ${len(args)}")
        if status is not None:
            args.append(status)
            clauses.append(f"status = ${len(args)}")
        if before is not None:
            args.extend(before)
            clauses.append(f"(placed_at, order_id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._pool.fetch(
            f"SELECT * FROM readmodel.orders {where}"
            f" ORDER BY placed_at DESC, order_id DESC LIMIT ${len(args)}",
            *args,
        )
        return Page(rows[:limit], len(rows) > limit)

    async def top_products(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT sku, units_sold, revenue FROM readmodel.sales_products WHERE units_sold > 0"
            " ORDER BY units_sold DESC, sku LIMIT $1",
            limit,
        )
        return [dict(r) for r in rows]

    async def products_by_sku(self, skus: list[str]) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            "SELECT * FROM readmodel.products WHERE sku = any($1::text[])", skus
        )

    async def orders_by_id(self, ids: list[str]) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            "SELECT * FROM readmodel.orders WHERE order_id = any($1::text[])", ids
        )

    async def orders_changed_since(
        self, customers: list[str], position: int, limit: int = 1_000
    ) -> list[asyncpg.Record]:
        return await self._pool.fetch(
            "SELECT * FROM readmodel.orders WHERE customer_id = any($1::text[])"
            " AND position > $2 ORDER BY position LIMIT $3",
            customers,
            position,
            limit,
        )

    async def dashboard_row(self) -> asyncpg.Record:
        """As of the projection's checkpoint: everything up to it is counted (the two move in
        one transaction, so one statement reads them consistently)."""
        row = await self._pool.fetchrow(
            "SELECT t.orders_placed, t.orders_paid, t.orders_shipped, t.orders_cancelled,"
            " t.revenue, p.position FROM readmodel.sales_totals t"
            " JOIN eventgraph.projections p ON p.name = 'sales' WHERE t.id = 1"
        )
        assert row is not None
        return row
