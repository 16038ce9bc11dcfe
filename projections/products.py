"""The product catalogue with stock: onHand, reserved, available."""

from __future__ import annotations

from typing import ClassVar

from domain.codec import DomainEvent
from domain.product import InventoryUpdated, ProductRegistered
from eventstore.events import RecordedEvent
from projections.base import Row, RowProjection


class ProductsProjection(RowProjection):
    name: ClassVar[str] = "products"
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
    )

    def key_of(self, event: DomainEvent) -> str | None:
        if isinstance(event, ProductRegistered | InventoryUpdated):
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
                **stamp,
            }
        if isinstance(event, InventoryUpdated) and row is not None:
            return {**row, "on_hand": event.on_hand, "reserved": event.reserved, **stamp}
        raise ValueError(f"{recorded.type} at {recorded.position} for an unknown product")
