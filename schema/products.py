"""The catalogue in the API: the `Product` type, the `product` and `products` queries, the
`product` live view, and `registerProduct` / `restockProduct`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry

from application.decision import CommandResult
from application.products import RegisterProduct, RestockProduct
from domain import product as product_domain
from domain import values
from projections import products
from projections.products import ProductView
from schema.context import Info
from schema.feature import Feature
from schema.paging import MAX_PAGE, PageInfo, given, page_info, page_size, read_after
from schema.scalars import Position
from schema.sharing import shared
from schema.types import DomainEvent


@strawberry.type
class Product:
    sku: str

    @strawberry.field(description="Stable key for client caches: the sku.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.sku)

    name: str
    unit_price: Decimal
    on_hand: int = strawberry.field(description="Units physically in stock.")
    reserved: int = strawberry.field(
        description="Units held by placed or paid orders that have not shipped."
    )
    available: int = strawberry.field(description="onHand - reserved: what a new order can take.")
    position: Position = strawberry.field(
        description="The read model's position when this view was read (see Positions on views)."
    )
    updated_at: datetime
    low_on_stock: bool = strawberry.field(
        default=False,
        description=(
            "Available stock fell below the shop's low-stock threshold"
            " (EVENTGRAPH_LOW_STOCK_THRESHOLD) and has not come back to it."
        ),
    )
    low_on_stock_since: datetime | None = strawberry.field(
        default=None, description="When it was flagged low on stock; null while it is not."
    )

    @classmethod
    def from_view(cls, view: ProductView) -> Product:
        return cls(
            sku=view.sku,
            name=view.name,
            unit_price=view.unit_price,
            on_hand=view.on_hand,
            reserved=view.reserved,
            available=view.available,
            position=view.position,
            updated_at=view.updated_at,
            low_on_stock=view.low_on_stock_since is not None,
            low_on_stock_since=view.low_on_stock_since,
        )

    @classmethod
    def from_state(cls, state: product_domain.Product, position: int, at: datetime) -> Product:
        view = ProductView(
            state.sku,
            state.name,
            state.unit_price,
            state.on_hand,
            state.reserved,
            position,
            at,
            position,
        )
        found = cls.from_view(view)
        found.low_on_stock = state.low_below is not None  # since when: the products query
        return found


@strawberry.type
class ProductEdge:
    cursor: str
    node: Product


@strawberry.type
class ProductConnection:
    edges: list[ProductEdge]
    page_info: PageInfo


@strawberry.type
class ProductPayload:
    sku: str
    position: Position = strawberry.field(
        description="Global position of the last event this command appended."
    )
    events: list[DomainEvent]
    result: strawberry.Private[CommandResult[product_domain.Product]]

    @strawberry.field(description="The product view as of position (read your own write).")
    async def product(self, info: Info) -> Product:
        if await read_after(info, products.NAME, self.position):
            view = await products.product(info.context.pool, self.sku)
            if view is not None:
                return Product.from_view(view)
        return Product.from_state(self.result.state, self.position, self.events[-1].occurred_at)

    @classmethod
    def of(cls, result: CommandResult[product_domain.Product]) -> ProductPayload:
        return cls(
            sku=result.state.sku,
            position=result.position,
            events=[DomainEvent.from_recorded(e) for e in result.events],
            result=result,
        )


@strawberry.type
class ProductQuery:
    @strawberry.field(description="Any signed-in user.")
    async def product(
        self, info: Info, sku: str, at_least: Position | None = strawberry.UNSET
    ) -> Product | None:
        info.context.require_user()
        values.sku(sku)
        await info.context.at_least(products.NAME, given(at_least))
        view = await products.product(info.context.pool, sku)
        return None if view is None else Product.from_view(view)

    @strawberry.field(description="Any signed-in user. Ordered by sku.")
    async def products(
        self,
        info: Info,
        first: int = 50,
        after: str | None = strawberry.UNSET,
        at_least: Position | None = strawberry.UNSET,
    ) -> ProductConnection:
        info.context.require_user()
        limit = page_size(first, MAX_PAGE)
        after_sku = None
        if given(after) is not None:
            [after_sku] = info.context.cursors.decode("products", str(after))
        await info.context.at_least(products.NAME, given(at_least))
        page = await products.products(info.context.pool, after_sku, limit)
        edges = [
            ProductEdge(
                cursor=info.context.cursors.encode("products", [v.sku]), node=Product.from_view(v)
            )
            for v in page.items
        ]
        return ProductConnection(
            edges=edges, page_info=page_info([e.cursor for e in edges], page.has_next)
        )


@strawberry.type
class ProductMutation:
    @strawberry.mutation(description="Staff only. ALREADY_EXISTS for a known sku.")
    async def register_product(
        self, info: Info, sku: str, name: str, unit_price: Decimal, initial_stock: int = 0
    ) -> ProductPayload:
        result = await info.context.handle(
            RegisterProduct(info.context.actor, sku, name, unit_price, initial_stock)
        )
        return ProductPayload.of(result)

    @strawberry.mutation(description="Staff only. quantity > 0.")
    async def restock_product(self, info: Info, sku: str, quantity: int) -> ProductPayload:
        result = await info.context.handle(RestockProduct(info.context.actor, sku, quantity))
        return ProductPayload.of(result)


@strawberry.type
class ProductSubscription:
    @strawberry.subscription(description="Live view of one product: any signed-in user.")
    @shared("role")
    async def product(self, info: Info, sku: str) -> AsyncGenerator[Product, None]:
        info.context.require_user()
        values.sku(sku)
        live = info.context.services.live
        await info.context.at_least(products.NAME)
        first = await products.product(info.context.pool, sku)
        async with contextlib.aclosing(live.watch(products.BY_SKU, sku, first)) as views:
            async for view in views:
                yield Product.from_view(view)


FEATURE = Feature(ProductQuery, ProductMutation, ProductSubscription)
