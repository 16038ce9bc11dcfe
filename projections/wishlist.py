"""Wishlists: each customer's wished products in the order added, and how many customers wish
each product. On the kit (projections/kit.py); its live view joins the `products` read model,
so a wishlist is pushed when it changes and when a wished product's stock or price does."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import asyncpg

from domain.wishlist import WishlistItemAdded, WishlistItemRemoved
from projections import products
from projections.joined import Follows, JoinedTopic, Via
from projections.kit import Change, Delete, Rows, Table, TableProjection
from projections.products import ProductView
from projections.slice import ReadModel, read_position

NAME = "wishlist"


class Wisher(NamedTuple):  # its position: how a removal (a deleted item) reaches live views
    customer_id: str
    items: int
    position: int


class Wished(NamedTuple):
    customer_id: str
    sku: str
    added: int  # the position it was added at: the list's order
    position: int


class Wishes(NamedTuple):
    sku: str
    wishes: int
    position: int


WISHERS = Table("wishlists", Wisher, key="customer_id")
WISHED = Table("wishlist_items", Wished, key=("customer_id", "sku"), indexes=("sku",))
WISHES = Table("product_wishes", Wishes, key="sku", indexes=("wishes DESC, sku",))


class WishlistProjection(TableProjection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table[Any], ...]] = (WISHERS, WISHED, WISHES)
    events: ClassVar[tuple[type, ...]] = (WishlistItemAdded, WishlistItemRemoved)

    def reads(self, event: Any, rows: Rows) -> Iterable[tuple[Table[Any], Hashable]]:
        customer, sku = event.customer_id, event.sku
        return [(WISHERS, customer), (WISHED, (customer, sku)), (WISHES, sku)]

    def evolve(self, rows: Rows, event: Any, position: int) -> Sequence[Change]:
        customer, sku = event.customer_id, event.sku
        wisher = rows.get(WISHERS, customer) or Wisher(customer, 0, 0)
        wishes = rows.get(WISHES, sku) or Wishes(sku, 0, 0)
        if isinstance(event, WishlistItemAdded):
            return [
                Wisher(customer, wisher.items + 1, position),
                Wished(customer, sku, position, position),
                Wishes(sku, wishes.wishes + 1, position),
            ]
        return [
            Wisher(customer, wisher.items - 1, position),
            Delete(WISHED, (customer, sku)),
            Wishes(sku, wishes.wishes - 1, position),
        ]


@dataclass(frozen=True, slots=True)
class WishlistView:
    customer_id: str
    items: tuple[ProductView, ...]  # the wished products' current views, in the order added
    position: int  # the wishlist read model's position when this view was read
    changed: int  # grows with every change to it or to a wished product (projections/joined.py)

    @classmethod
    def of(
        cls, key: str, rows: Sequence[asyncpg.Record], position: int, changed: int
    ) -> WishlistView:
        ordered = sorted(rows, key=lambda r: r["added"])
        return cls(
            key, tuple(ProductView.of(r, r["read_position"]) for r in ordered), position, changed
        )


BY_CUSTOMER = JoinedTopic(
    "wishlist by customer",
    model=NAME,
    select=f"SELECT w.customer_id, w.added, p.*, {read_position(products.NAME)}"
    " FROM readmodel.wishlist_items w JOIN readmodel.products p USING (sku)"
    " WHERE w.customer_id = any({keys})",
    key="customer_id",
    of=WishlistView.of,
    follows=(
        Follows("wishlists", key="customer_id"),
        Follows(
            "products", model=products.NAME, via=Via("wishlist_items", on="sku", key="customer_id")
        ),
    ),
)


async def wishlist_of(pool: asyncpg.Pool, customer_id: str) -> WishlistView:
    views: dict[str, WishlistView] = await BY_CUSTOMER.read(pool, [customer_id])  # empty: none
    return views[customer_id]


async def most_wished(pool: asyncpg.Pool, limit: int) -> list[Wishes]:
    query = "SELECT sku, wishes, position FROM readmodel.product_wishes WHERE wishes > 0"
    return [
        Wishes(*r) for r in await pool.fetch(f"{query} ORDER BY wishes DESC, sku LIMIT $1", limit)
    ]


READ_MODEL = ReadModel(WishlistProjection(), (BY_CUSTOMER,))
