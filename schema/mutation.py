"""The contract's mutations: thin resolvers that call the command handler."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from domain import order as order_domain
from domain import product as product_domain
from eventgraph.commands import CommandResult
from schema.context import Info
from schema.types import (
    DomainEvent,
    Order,
    OrderLine,
    OrderLineInput,
    OrderPayload,
    OrderStatus,
    Product,
    ProductPayload,
)


def product_view(
    state: product_domain.Product, position: int, result: CommandResult[object]
) -> Product:
    return Product(
        sku=state.sku,
        name=state.name,
        unit_price=state.unit_price,
        on_hand=state.on_hand,
        reserved=state.reserved,
        available=state.available,
        position=position,
        updated_at=result.events[-1].occurred_at,
    )


def order_view(state: order_domain.Order, position: int) -> Order:
    return Order(
        id=strawberry.ID(state.order_id),
        customer_id=state.customer_id,
        status=OrderStatus(state.status.value),
        lines=[
            OrderLine(
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                line_total=line.line_total,
            )
            for line in state.lines
        ],
        total=state.total,
        amount_paid=state.amount_paid,
        placed_at=state.placed_at,
        updated_at=state.updated_at,
        version=state.version,
        position=position,
    )


def _product_payload(result: CommandResult[product_domain.Product]) -> ProductPayload:
    return ProductPayload(
        sku=result.state.sku,
        position=result.position,
        events=[DomainEvent.from_recorded(e) for e in result.events],
        product=product_view(result.state, result.position, result),  # type: ignore[arg-type]
    )


def _order_payload(result: CommandResult[order_domain.Order]) -> OrderPayload:
    return OrderPayload(
        order_id=strawberry.ID(result.state.order_id),
        position=result.position,
        events=[DomainEvent.from_recorded(e) for e in result.events],
        order=order_view(result.state, result.position),
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Staff only. ALREADY_EXISTS for a known sku.")
    async def register_product(
        self, info: Info, sku: str, name: str, unit_price: Decimal, initial_stock: int = 0
    ) -> ProductPayload:
        shop = info.context.shop
        result = await shop.register_product(
            info.context.actor, sku, name, unit_price, initial_stock
        )
        return _product_payload(result)

    @strawberry.mutation(description="Staff only. quantity > 0.")
    async def restock_product(self, info: Info, sku: str, quantity: int) -> ProductPayload:
        result = await info.context.shop.restock_product(info.context.actor, sku, quantity)
        return _product_payload(result)

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
        result = await info.context.shop.place_order(
            info.context.actor,
            [(line.sku, line.quantity) for line in lines],
            idempotency_key or None,
        )
        return _order_payload(result)

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
        result = await info.context.shop.pay_order(
            info.context.actor, str(order_id), amount, idempotency_key or None
        )
        return _order_payload(result)

    @strawberry.mutation(description="Staff only. PAID -> SHIPPED; reserved stock leaves onHand.")
    async def ship_order(self, info: Info, order_id: strawberry.ID) -> OrderPayload:
        return _order_payload(await info.context.shop.ship_order(info.context.actor, str(order_id)))

    @strawberry.mutation(
        description=(
            "The order's customer or staff, before shipping. Releases reserved stock; refunds"
            " what was paid."
        )
    )
    async def cancel_order(self, info: Info, order_id: strawberry.ID, reason: str) -> OrderPayload:
        result = await info.context.shop.cancel_order(info.context.actor, str(order_id), reason)
        return _order_payload(result)
