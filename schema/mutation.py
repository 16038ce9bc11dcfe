"""The contract's mutations: thin resolvers that call the command handler. Each payload's
view is read from the read model once it has applied the command's position."""

from __future__ import annotations

import logging
from decimal import Decimal

import strawberry

from application import commands
from application.handler import CommandResult
from domain import ids
from domain import order as order_domain
from domain import product as product_domain
from projections import orders, products
from schema.context import Info
from schema.query import given
from schema.scalars import Position
from schema.types import DomainEvent, Order, OrderLineInput, Product

log = logging.getLogger(__name__)


async def _read_after(info: Info, projection: str, position: int) -> bool:
    """Wait for the read model to reach `position`; False if it could not in time, in which
    case the payload falls back to the command's own result, which is the same view."""
    try:
        await info.context.at_least(projection, position)
        return True
    except TimeoutError as exc:
        log.warning("mutation payload from the command's result: %s", exc)
        return False


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
        if await _read_after(info, products.NAME, self.position):
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
class OrderPayload:
    order_id: strawberry.ID
    position: Position
    events: list[DomainEvent]
    result: strawberry.Private[CommandResult[order_domain.Order]]

    @strawberry.field(description="The order view as of position (read your own write).")
    async def order(self, info: Info) -> Order:
        if await _read_after(info, orders.NAME, self.position):
            view = await orders.order(info.context.pool, str(self.order_id))
            if view is not None:
                return Order.from_view(view)
        return Order.from_state(self.result.state, self.position)

    @classmethod
    def of(cls, result: CommandResult[order_domain.Order]) -> OrderPayload:
        return cls(
            order_id=strawberry.ID(result.state.order_id),
            position=result.position,
            events=[DomainEvent.from_recorded(e) for e in result.events],
            result=result,
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Staff only. ALREADY_EXISTS for a known sku.")
    async def register_product(
        self, info: Info, sku: str, name: str, unit_price: Decimal, initial_stock: int = 0
    ) -> ProductPayload:
        result = await info.context.handle(
            commands.RegisterProduct(info.context.actor, sku, name, unit_price, initial_stock)
        )
        return ProductPayload.of(result)

    @strawberry.mutation(description="Staff only. quantity > 0.")
    async def restock_product(self, info: Info, sku: str, quantity: int) -> ProductPayload:
        result = await info.context.handle(
            commands.RestockProduct(info.context.actor, sku, quantity)
        )
        return ProductPayload.of(result)

    @strawberry.mutation(
        description=(
            "A customer places an order for themself: prices come from the catalogue, and\n"
            "stock is reserved in the same atomic append (INSUFFICIENT_STOCK otherwise).\n"
            "The same idempotencyKey from the same customer returns the first result and\n"
            "appends nothing more."
        )
    )
    async def place_order(
        self,
        info: Info,
        lines: list[OrderLineInput],
        idempotency_key: str | None = strawberry.UNSET,
    ) -> OrderPayload:
        result = await info.context.handle(
            commands.PlaceOrder(
                info.context.actor,
                [(line.sku, line.quantity) for line in lines],
                given(idempotency_key),
            )
        )
        return OrderPayload.of(result)

    @strawberry.mutation(
        description=(
            "The order's customer or staff. amount must equal total - amountPaid. PLACED -> PAID."
        )
    )
    async def pay_order(
        self,
        info: Info,
        order_id: strawberry.ID,
        amount: Decimal,
        idempotency_key: str | None = strawberry.UNSET,
    ) -> OrderPayload:
        result = await info.context.handle(
            commands.PayOrder(
                info.context.actor, ids.order_id(order_id), amount, given(idempotency_key)
            )
        )
        return OrderPayload.of(result)

    @strawberry.mutation(description="Staff only. PAID -> SHIPPED; reserved stock leaves onHand.")
    async def ship_order(self, info: Info, order_id: strawberry.ID) -> OrderPayload:
        return OrderPayload.of(
            await info.context.handle(
                commands.ShipOrder(info.context.actor, ids.order_id(order_id))
            )
        )

    @strawberry.mutation(
        description=(
            "The order's customer or staff, before shipping. Releases reserved stock; refunds"
            " what was paid."
        )
    )
    async def cancel_order(self, info: Info, order_id: strawberry.ID, reason: str) -> OrderPayload:
        result = await info.context.handle(
            commands.CancelOrder(info.context.actor, ids.order_id(order_id), reason)
        )
        return OrderPayload.of(result)
