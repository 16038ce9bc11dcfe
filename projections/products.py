"""The product catalogue with stock (onHand, reserved, available): its table, how events
change it, its typed view, its queries and its live topic, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import asyncpg

from domain.aggregate import DomainEvent
from domain.product import InventoryUpdated, LowStockReached, ProductRegistered
from eventstore.events import RecordedEvent
from projections.base import Page, Row, RowProjection
from projections.slice import LiveTopic, ReadModel, changed_rows, read_position

NAME = "products"


@dataclass(frozen=True, slots=True)
class ProductView:
    sku: str
    name: str
    unit_price: Decimal
    on_hand: int
    reserved: int
    position: int
    """The read model's position when this view was read (see "Positions on views")."""
    updated_at: datetime
    changed: int
    """The position of the last event that changed this product."""
    low_on_stock_since: datetime | None = None
    """When available stock last fell below the low-stock threshold, until it is back."""

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @classmethod
    def of(cls, row: asyncpg.Record | dict[str, Any], position: int | None = None) -> ProductView:
        return cls(
            row["sku"],
            row["name"],
            row["unit_price"],
            row["on_hand"],
            row["reserved"],
            row["read_position"] if position is None else position,
            row["updated_at"],
            row["position"],
            row["low_since"],
        )


class ProductsProjection(RowProjection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    views: ClassVar[tuple[str, ...]] = ("products",)
    table: ClassVar[str] = "products"
    key: ClassVar[str] = "sku"
    columns: ClassVar[tuple[tuple[str, str], ...]] = (
        ("sku", "text"),
        ("name", "text NOT NULL"),
        ("unit_price", "numeric NOT NULL"),
        ("on_hand", "integer NOT NULL"),
        ("reserved", "integer NOT NULL"),
        ("position", "bigint NOT NULL"),
        ("updated_at", "timestamptz NOT NULL"),
        ("low_below", "integer"),
        ("low_since", "timestamptz"),
    )
    added_columns: ClassVar[tuple[str, ...]] = ("low_below", "low_since")

    def key_of(self, event: DomainEvent) -> str | None:
        if isinstance(event, ProductRegistered | InventoryUpdated | LowStockReached):
            return event.sku
        return None

    def evolve(self, row: Row | None, event: DomainEvent, recorded: RecordedEvent) -> Row | None:
        stamp = {"position": recorded.position, "updated_at": recorded.occurred_at}
        if isinstance(event, ProductRegistered):
            return {
                "sku": event.sku,
                "name": event.name,
                "unit_price": event.unit_price,
                "on_hand": event.initial_stock,
                "reserved": 0,
                "low_below": None,
                "low_since": None,
                **stamp,
            }
        if isinstance(event, InventoryUpdated) and row is not None:
            updated = {**row, "on_hand": event.on_hand, "reserved": event.reserved, **stamp}
            low = row["low_below"]
            if low is not None and event.on_hand - event.reserved >= low:
                updated |= {"low_below": None, "low_since": None}  # back to the threshold
            return updated
        if isinstance(event, LowStockReached) and row is not None:
            return {**row, "low_below": event.threshold, "low_since": event.occurred_at, **stamp}
        raise ValueError(f"{recorded.type} at {recorded.position} for an unknown product")


async def product(pool: asyncpg.Pool, sku: str) -> ProductView | None:
    row = await pool.fetchrow(
        f"SELECT *, {read_position(NAME)} FROM readmodel.products WHERE sku = $1", sku
    )
    return None if row is None else ProductView.of(row)


async def products(pool: asyncpg.Pool, after_sku: str | None, limit: int) -> Page[ProductView]:
    """Ordered by sku, after `after_sku`."""
    rows = await pool.fetch(
        f"SELECT *, {read_position(NAME)} FROM readmodel.products"
        " WHERE $1::text IS NULL OR sku > $1 ORDER BY sku LIMIT $2",
        after_sku,
        limit + 1,
    )
    return Page([ProductView.of(r) for r in rows[:limit]], len(rows) > limit)


BY_SKU = LiveTopic("product by sku", changed_rows(NAME, "products", "sku", ProductView.of))

READ_MODEL = ReadModel(ProductsProjection(), (BY_SKU,))
