"""The shop's commands, as the GraphQL mutations call them: each builds its decision from the
pure deciders and hands it to the command handler."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from application.handler import CommandHandler, CommandResult, Loaded
from application.idempotency import Idempotency
from domain import order, product, values
from domain import shop as rules
from domain.aggregate import DomainEvent
from domain.errors import NotFound
from domain.ids import OrderId, new_order_id
from domain.values import Actor
from eventstore import ids
from eventstore.store import EventStore


class Shop:
    """The shop's commands, as the GraphQL mutations call them."""

    def __init__(self, store: EventStore, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.handler = CommandHandler(store, clock)
        self._clock = self.handler.clock

    # Products ------------------------------------------------------------------------------

    async def register_product(
        self, actor: Actor, sku: str, name: str, unit_price: object, initial_stock: int
    ) -> CommandResult[product.Product]:
        actor.require_staff()
        command = product.RegisterProduct(
            values.sku(sku),
            values.text(name, field="name", maximum=values.MAX_NAME),
            values.money(unit_price, field="unitPrice"),
            values.stock(initial_stock),
            actor,
            self._clock(),
        )
        return await self._product_command(actor, sku, command)

    async def restock_product(
        self, actor: Actor, sku: str, quantity: int
    ) -> CommandResult[product.Product]:
        actor.require_staff()
        values.sku(sku)
        values.quantity(quantity)
        return await self._product_command(
            actor, sku, product.RestockProduct(sku, quantity, actor, self._clock())
        )

    async def _product_command(
        self, actor: Actor, sku: str, command: product.ProductCommand
    ) -> CommandResult[product.Product]:
        stream = product.stream_id(sku)

        def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
            state = loaded.state(stream)
            return {stream: list(product.decide(command, state))}

        result = await self.handler.execute(actor, type(command).__name__, [stream], decide)
        return await self.handler.with_state(result, stream)

    # Orders --------------------------------------------------------------------------------

    async def place_order(
        self, actor: Actor, lines: Sequence[tuple[str, int]], idempotency_key: str | None = None
    ) -> CommandResult[order.Order]:
        requested = order.validate_lines(tuple(lines))
        key = Idempotency.of(
            actor,
            idempotency_key,
            "placeOrder",
            sorted([sku, qty] for sku, qty in requested),
            frozenset(product.stream_id(sku) for sku, _ in requested),
        )
        order_id = new_order_id(ids.uuid4())
        order_stream = order.stream_id(order_id)
        product_streams = {sku: product.stream_id(sku) for sku, _ in requested}

        def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
            catalogue = {sku: loaded.state(stream) for sku, stream in product_streams.items()}
            return rules.checkout(order_id, requested, catalogue, actor, self._clock())

        result = await self.handler.execute(
            actor,
            "PlaceOrder",
            [order_stream, *product_streams.values()],
            decide,
            key,
            new_streams={order_stream},
        )
        return await self.handler.order_result(result)

    async def pay_order(
        self,
        actor: Actor,
        order_id: OrderId,
        amount: object,
        idempotency_key: str | None = None,
    ) -> CommandResult[order.Order]:
        paid = values.money(amount)
        stream = order.stream_id(order_id)
        key = Idempotency.of(
            actor, idempotency_key, "payOrder", [order_id, str(paid)], frozenset({stream})
        )

        def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
            state = loaded.state(stream)
            command = order.PayOrder(order_id, paid, actor, self._clock())
            return {stream: list(order.decide(command, state))}

        return await self.handler.order_result(
            await self.handler.execute(actor, "PayOrder", [stream], decide, key)
        )

    async def ship_order(self, actor: Actor, order_id: OrderId) -> CommandResult[order.Order]:
        actor.require_staff()
        return await self._order_with_stock(
            actor,
            order_id,
            "ShipOrder",
            lambda placed, stock, at: rules.ship(placed, stock, actor, at),
        )

    async def cancel_order(
        self, actor: Actor, order_id: OrderId, reason: str
    ) -> CommandResult[order.Order]:
        reason = values.text(reason, field="reason", maximum=values.MAX_REASON)
        return await self._order_with_stock(
            actor,
            order_id,
            "CancelOrder",
            lambda placed, stock, at: rules.cancel(placed, stock, reason, actor, at),
        )

    async def _order_with_stock(
        self,
        actor: Actor,
        order_id: OrderId,
        name: str,
        rule: Callable[
            [order.OrderState, dict[str, product.ProductState], datetime], rules.Decision
        ],
    ) -> CommandResult[order.Order]:
        """Ship or cancel: the order's events and each reserved product's stock move together.
        The order's lines say which products to load, so it is read first."""
        stream = order.stream_id(order_id)
        current = await self.store.read_stream(stream)
        if not current:
            raise NotFound(f"no order {order_id!r}")
        placed = self.handler.decode(current[0])
        assert isinstance(placed, order.OrderPlaced)
        product_streams = {line.sku: product.stream_id(line.sku) for line in placed.lines}

        def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
            stock = {sku: loaded.state(ps) for sku, ps in product_streams.items()}
            return rule(loaded.state(stream), stock, self._clock())

        result = await self.handler.execute(
            actor, name, [stream, *product_streams.values()], decide
        )
        return await self.handler.order_result(result)
