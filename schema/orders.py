"""Orders in the API: the `Order` type, the `order` and `orders` queries, the `order` live
view and the `myOrders` / `orders` feeds, and `placeOrder`, `payOrder`, `shipOrder`,
`cancelOrder`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime
from decimal import Decimal

import strawberry

from application.decision import CommandResult
from application.orders import CancelOrder, PayOrder, PlaceOrder, ShipOrder
from domain import contact, ids
from domain import order as order_domain
from projections import orders
from projections.orders import OrderView
from projections.slice import EVERY, LiveTopic
from schema.context import Info
from schema.feature import Feature
from schema.paging import (
    MAX_PAGE,
    PageInfo,
    given,
    page_info,
    page_size,
    read_after,
    valid_customer_id,
)
from schema.scalars import Position
from schema.sharing import shared
from schema.types import DomainEvent

OrderStatus = order_domain.OrderStatus
strawberry.enum(OrderStatus)  # the domain's own enum is the GraphQL one


@strawberry.type
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@strawberry.type
class ShippingAddress:
    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str

    @classmethod
    def of(cls, address: contact.ShippingAddress | None) -> ShippingAddress | None:
        if address is None:
            return None
        return cls(
            name=address.name,
            line1=address.line1,
            line2=address.line2,
            city=address.city,
            postal_code=address.postal_code,
            country=address.country,
        )


@strawberry.input
class ShippingAddressInput:
    name: str
    line1: str
    line2: str | None = strawberry.UNSET
    city: str
    postal_code: str
    country: str = strawberry.field(description='ISO 3166-1 alpha-2, e.g. "DE".')

    def validated(self) -> contact.ShippingAddress:
        return contact.shipping_address(
            self.name, self.line1, given(self.line2), self.city, self.postal_code, self.country
        )


@strawberry.type
class Order:
    id: strawberry.ID
    customer_id: str
    status: OrderStatus
    lines: list[OrderLine]
    total: Decimal
    amount_paid: Decimal
    placed_at: datetime
    updated_at: datetime
    version: int = strawberry.field(
        description="Version of the order's own stream: 1 right after it was placed."
    )
    position: Position = strawberry.field(
        description="The read model's position when this view was read (see Positions on views)."
    )
    expires_at: datetime | None = strawberry.field(
        default=None, description="While PLACED: when it expires unless paid. Otherwise null."
    )
    shipping_address: ShippingAddress | None = strawberry.field(
        default=None,
        description="Null when none was given, or once the customer was forgotten.",
    )
    email: str | None = strawberry.field(
        default=None,
        description="Null when none was given, or once the customer was forgotten.",
    )

    @classmethod
    def from_view(cls, view: OrderView) -> Order:
        return cls(
            id=strawberry.ID(view.order_id),
            customer_id=view.customer_id,
            status=view.status,
            lines=[
                OrderLine(
                    sku=line.sku,
                    quantity=line.quantity,
                    unit_price=line.unit_price,
                    line_total=line.line_total,
                )
                for line in view.lines
            ],
            total=view.total,
            amount_paid=view.amount_paid,
            placed_at=view.placed_at,
            updated_at=view.updated_at,
            version=view.version,
            position=view.position,
            expires_at=view.expires_at,
            shipping_address=ShippingAddress.of(view.shipping_address),
            email=view.email,
        )

    @classmethod
    def from_state(cls, state: order_domain.Order, position: int) -> Order:
        view = OrderView(
            state.order_id,
            state.customer_id,
            state.status,
            state.lines,
            state.total,
            state.amount_paid,
            state.placed_at,
            state.updated_at,
            state.version,
            position,
            position,
            state.expires_at,
        )
        return cls.from_view(view)


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo
    position: Position = strawberry.field(
        description=(
            "The orders read model's position when this page was read: start a feed"
            " (myOrders, orders) with after = it, and it misses nothing since."
        )
    )


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int


@strawberry.type
class OrderPayload:
    order_id: strawberry.ID
    position: Position
    events: list[DomainEvent]
    result: strawberry.Private[CommandResult[order_domain.Order]]

    @strawberry.field(description="The order view as of position (read your own write).")
    async def order(self, info: Info) -> Order:
        if await read_after(info, orders.NAME, self.position):
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
class OrderQuery:
    @strawberry.field(description="The order's customer or staff; another customer gets FORBIDDEN.")
    async def order(
        self, info: Info, id: strawberry.ID, at_least: Position | None = strawberry.UNSET
    ) -> Order | None:
        actor = info.context.actor
        order_id = ids.order_id(id, field="id")
        await info.context.at_least(orders.NAME, given(at_least))
        view = await orders.order(info.context.pool, order_id)
        if view is None:
            return None
        actor.require_access(view.customer_id)
        return Order.from_view(view)

    @strawberry.field(
        description=(
            "Newest first. A customer sees only their own orders; staff may filter by customerId."
        )
    )
    async def orders(
        self,
        info: Info,
        status: OrderStatus | None = strawberry.UNSET,
        customer_id: str | None = strawberry.UNSET,
        first: int = 20,
        after: str | None = strawberry.UNSET,
        at_least: Position | None = strawberry.UNSET,
    ) -> OrderConnection:
        actor = info.context.actor
        customer = given(customer_id)
        if customer is not None:
            customer = valid_customer_id(customer)
        if not actor.is_staff:
            actor.require_access(customer or actor.id, "a customer sees only their own orders")
            customer = actor.id
        limit = page_size(first, MAX_PAGE)
        before = None
        if given(after) is not None:
            placed_at, order_id = info.context.cursors.decode("orders", str(after))
            before = (datetime.fromisoformat(placed_at), order_id)
        await info.context.at_least(orders.NAME, given(at_least))
        page = await orders.orders(info.context.pool, customer, given(status), before, limit)
        cursors = info.context.cursors
        edges = [
            OrderEdge(
                cursor=cursors.encode("orders", [v.placed_at.isoformat(), v.order_id]),
                node=Order.from_view(v),
            )
            for v in page.items
        ]
        return OrderConnection(
            edges=edges,
            page_info=page_info([e.cursor for e in edges], page.has_next),
            position=page.position,
        )


@strawberry.type
class OrderMutation:
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
        shipping_address: ShippingAddressInput | None = strawberry.UNSET,
        email: str | None = strawberry.UNSET,
    ) -> OrderPayload:
        address, mail = given(shipping_address), given(email)
        result = await info.context.handle(
            PlaceOrder(
                info.context.actor,
                [(line.sku, line.quantity) for line in lines],
                given(idempotency_key),
                None if address is None else address.validated(),
                None if mail is None else contact.email(mail),
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
            PayOrder(info.context.actor, ids.order_id(order_id), amount, given(idempotency_key))
        )
        return OrderPayload.of(result)

    @strawberry.mutation(description="Staff only. PAID -> SHIPPED; reserved stock leaves onHand.")
    async def ship_order(self, info: Info, order_id: strawberry.ID) -> OrderPayload:
        return OrderPayload.of(
            await info.context.handle(ShipOrder(info.context.actor, ids.order_id(order_id)))
        )

    @strawberry.mutation(
        description=(
            "The order's customer or staff, before shipping. Releases reserved stock; refunds"
            " what was paid."
        )
    )
    async def cancel_order(self, info: Info, order_id: strawberry.ID, reason: str) -> OrderPayload:
        result = await info.context.handle(
            CancelOrder(info.context.actor, ids.order_id(order_id), reason)
        )
        return OrderPayload.of(result)


async def _feed(
    info: Info, spec: LiveTopic, key: str, after: int | None
) -> AsyncGenerator[Order, None]:
    """A feed's views (see `LiveViews.feed`); a subscriber that falls behind gets UNAVAILABLE
    with `extensions.position`, the last position it was sent, to resume after
    (`FellBehind`, formatted in schema/errors.py)."""
    await info.context.at_least(orders.NAME)
    if after is not None:
        await info.context.require_in_log(after, "after")
    now = info.context.services.watch.position(orders.NAME)
    live = info.context.services.live
    async with contextlib.aclosing(live.feed(spec, key, after, now)) as views:
        async for view in views:
            yield Order.from_view(view)


@strawberry.type
class OrderSubscription:
    @strawberry.subscription(description="Live view of one order: the order's customer or staff.")
    @shared("user")
    async def order(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Order, None]:
        actor = info.context.actor
        live = info.context.services.live
        order_id = ids.order_id(id, field="id")
        await info.context.at_least(orders.NAME)
        first = await orders.order(info.context.pool, order_id)
        async with contextlib.aclosing(live.watch(orders.BY_ID, order_id, first)) as views:
            async for view in views:
                actor.require_access(view.customer_id)
                yield Order.from_view(view)

    @strawberry.subscription(
        description=(
            "Every change to any of the viewer's own orders, as the order's new view. A feed:"
            " see Feeds."
        )
    )
    async def my_orders(
        self, info: Info, after: Position | None = strawberry.UNSET
    ) -> AsyncGenerator[Order, None]:
        actor = info.context.actor
        async for view in _feed(info, orders.BY_CUSTOMER, actor.id, given(after)):
            yield view

    @strawberry.subscription(
        description=(
            "Staff only. Every change to any order, as the order's new view. A feed: see Feeds."
        )
    )
    async def orders(
        self, info: Info, after: Position | None = strawberry.UNSET
    ) -> AsyncGenerator[Order, None]:
        info.context.actor.require_staff()
        async for view in _feed(info, orders.ALL, EVERY, given(after)):
            yield view


FEATURE = Feature(OrderQuery, OrderMutation, OrderSubscription)
