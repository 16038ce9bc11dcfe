"""A read model for tests only (never registered in READ_MODELS): what each customer has in
orders not cancelled or expired, per sku, built on the projection kit, and a live view of it
that shows each product's current availability from the `products` read model.

It has the shapes the kit is for: many rows per event (a row per sku of an order), deletes
(a sku whose units fall to 0), a lookup of another aggregate's facts (an order's customer
and lines, which a cancel does not carry), and a joined live view that a restock of a bought
product moves although this read model did not change."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import asyncpg

from domain.order import OrderCancelled, OrderExpired, OrderPlaced
from projections.joined import Follows, JoinedTopic, Via
from projections.kit import Change, Delete, Rows, Table, TableProjection
from projections.slice import ReadModel

NAME = "kit_bought"


class Buyer(NamedTuple):
    customer_id: str
    orders: int
    """Orders not cancelled or expired."""
    position: int


class Bought(NamedTuple):
    customer_id: str
    sku: str
    units: int
    position: int


class Placed(NamedTuple):
    order_id: str
    customer_id: str
    lines: list[dict[str, Any]]


BUYERS = Table("kit_buyers", Buyer, key="customer_id")
BOUGHT = Table("kit_bought", Bought, key=("customer_id", "sku"), indexes=("sku",))
PLACED = Table("kit_placed", Placed, key="order_id", view=False)


class BoughtProjection(TableProjection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table[Any], ...]] = (BUYERS, BOUGHT, PLACED)
    events: ClassVar[tuple[type, ...]] = (OrderPlaced, OrderCancelled, OrderExpired)

    def reads(self, event: Any, rows: Rows) -> Iterable[tuple[Table[Any], Hashable]]:
        if isinstance(event, OrderPlaced):
            customer, skus = event.customer_id, [line.sku for line in event.lines]
        else:
            placed = rows.get(PLACED, event.order_id)
            if placed is None:
                return [(PLACED, event.order_id)]
            customer, skus = placed.customer_id, [line["sku"] for line in placed.lines]
        return [(BUYERS, customer), *((BOUGHT, (customer, sku)) for sku in skus)]

    def evolve(self, rows: Rows, event: Any, position: int) -> Sequence[Change]:
        if isinstance(event, OrderPlaced):
            customer, sign = event.customer_id, 1
            lines: list[dict[str, Any]] = [line.as_json() for line in event.lines]
            changes: list[Change] = [Placed(event.order_id, customer, lines)]
        else:
            placed = rows.get(PLACED, event.order_id)
            if placed is None:
                raise ValueError(f"{type(event).__name__} at {position}: unknown order")
            customer, sign, lines = placed.customer_id, -1, placed.lines
            changes = [Delete(PLACED, event.order_id)]
        buyer = rows.get(BUYERS, customer) or Buyer(customer, 0, 0)
        changes.append(Buyer(customer, buyer.orders + sign, position))
        for line in lines:
            was = rows.get(BOUGHT, (customer, line["sku"]))
            units = (was.units if was else 0) + sign * line["quantity"]
            if units:
                changes.append(Bought(customer, line["sku"], units, position))
            else:
                changes.append(Delete(BOUGHT, (customer, line["sku"])))
        return changes


@dataclass(frozen=True)
class BoughtView:
    customer_id: str
    items: tuple[tuple[str, int, int], ...]
    """(sku, units, available now), by sku."""
    position: int
    changed: int

    @classmethod
    def of(
        cls, key: str, rows: Sequence[asyncpg.Record], position: int, changed: int
    ) -> BoughtView:
        items = tuple(sorted((r["sku"], r["units"], r["available"]) for r in rows))
        return cls(key, items, position, changed)


BY_CUSTOMER = JoinedTopic(
    "bought by customer",
    model=NAME,
    select="SELECT b.customer_id, b.sku, b.units, p.on_hand - p.reserved AS available"
    " FROM readmodel.kit_bought b JOIN readmodel.products p USING (sku)"
    " WHERE b.customer_id = any({keys})",
    key="customer_id",
    of=BoughtView.of,
    follows=(
        Follows("kit_buyers", key="customer_id"),
        Follows("products", model="products", via=Via("kit_bought", on="sku", key="customer_id")),
    ),
)

READ_MODEL = ReadModel(BoughtProjection(), (BY_CUSTOMER,))
