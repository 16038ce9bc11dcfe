"""The Product aggregate: a catalogue entry and its stock.

Stock moves through `InventoryUpdated` events, one type with a reason, each carrying the
levels after the change so that a reader never has to re-derive them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, assert_never

from domain import values
from domain.aggregate import AggregateType
from domain.errors import AlreadyExists, InsufficientStock, InvalidState, NotFound
from domain.ids import OrderId
from domain.values import Actor

STREAM_PREFIX = "product-"


def stream_id(sku: str) -> str:
    return f"{STREAM_PREFIX}{sku}"


# Events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductRegistered:
    schema_version: ClassVar[int] = 1
    sku: str
    name: str
    unit_price: Decimal
    initial_stock: int
    occurred_at: datetime


class StockChange(StrEnum):
    RESTOCK = "restock"
    RESERVATION = "reservation"
    RELEASE = "release"
    SHIPMENT = "shipment"


@dataclass(frozen=True, slots=True)
class InventoryUpdated:
    """v2: `orderId` is canonical (see `domain.ids`); v1 may hold any spelling of it."""

    schema_version: ClassVar[int] = 2
    sku: str
    reason: StockChange
    quantity: int
    on_hand: int
    """Units physically in stock after the change."""
    reserved: int
    """Units held by open orders after the change."""
    order_id: OrderId | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class LowStockReached:
    """Available stock fell below `threshold`: once per crossing (it must rise to the threshold
    again before the next one)."""

    schema_version: ClassVar[int] = 1
    sku: str
    available: int
    threshold: int
    occurred_at: datetime


ProductEvent = ProductRegistered | InventoryUpdated | LowStockReached

# Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterProduct:
    """As the caller gave it: `decide` checks every value (domain/values.py holds the rules)."""

    sku: str
    name: str
    unit_price: object
    initial_stock: int
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class RestockProduct:
    sku: str
    quantity: int
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class ReserveStock:
    sku: str
    order_id: OrderId
    quantity: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseStock:
    sku: str
    order_id: OrderId
    quantity: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ShipStock:
    sku: str
    order_id: OrderId
    quantity: int
    at: datetime


@dataclass(frozen=True, slots=True)
class FlagLowStock:
    """Asked by the server itself (its low-stock reaction) after stock fell below `threshold`."""

    sku: str
    threshold: int
    actor: Actor
    at: datetime


ProductCommand = (
    RegisterProduct | RestockProduct | ReserveStock | ReleaseStock | ShipStock | FlagLowStock
)

# State -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    unit_price: Decimal
    on_hand: int
    reserved: int
    low_below: int | None = None
    """The threshold of the last LowStockReached, until available stock is back to it."""

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def crossed_below(event: InventoryUpdated, threshold: int) -> bool:
    """Whether this stock move took available stock from `threshold` or more to below it.
    Every move carries the levels after it and the quantity moved, so the level before is
    known from the event alone (a shipment moves on-hand and reserved together)."""
    after = event.on_hand - event.reserved
    change = {
        StockChange.RESERVATION: -event.quantity,
        StockChange.RELEASE: event.quantity,
        StockChange.RESTOCK: event.quantity,
        StockChange.SHIPMENT: 0,
    }[event.reason]
    return after < threshold <= after - change


ProductState = Product | None
initial_state: ProductState = None


def evolve(state: ProductState, event: ProductEvent) -> ProductState:
    match event:
        case ProductRegistered():
            return Product(event.sku, event.name, event.unit_price, event.initial_stock, 0)
        case InventoryUpdated():
            assert state is not None
            low = state.low_below
            if low is not None and event.on_hand - event.reserved >= low:
                low = None
            return Product(
                state.sku, state.name, state.unit_price, event.on_hand, event.reserved, low
            )
        case LowStockReached():
            assert state is not None
            return Product(
                state.sku,
                state.name,
                state.unit_price,
                state.on_hand,
                state.reserved,
                event.threshold,
            )
        case _:
            assert_never(event)


def _existing(state: ProductState, sku: str) -> Product:
    if state is None:
        raise NotFound(f"no product with sku {sku!r}")
    return state


def _stock_change(
    state: Product,
    command: ReserveStock | ReleaseStock | ShipStock | RestockProduct,
    reason: StockChange,
    on_hand: int,
    reserved: int,
    order_id: OrderId | None,
) -> list[ProductEvent]:
    return [
        InventoryUpdated(
            sku=state.sku,
            reason=reason,
            quantity=command.quantity,
            on_hand=on_hand,
            reserved=reserved,
            order_id=order_id,
            occurred_at=command.at,
        )
    ]


def decide(command: ProductCommand, state: ProductState) -> list[ProductEvent]:
    match command:
        case RegisterProduct():
            command.actor.require_staff()
            sku = values.sku(command.sku)
            name = values.text(command.name, field="name", maximum=values.MAX_NAME)
            price = values.money(command.unit_price, field="unitPrice")
            stock = values.stock(command.initial_stock)
            if state is not None:
                raise AlreadyExists(f"a product with sku {sku!r} already exists")
            return [ProductRegistered(sku, name, price, stock, command.at)]
        case RestockProduct():
            command.actor.require_staff()
            values.sku(command.sku)
            quantity = values.quantity(command.quantity)
            product = _existing(state, command.sku)
            if product.on_hand + quantity > values.MAX_STOCK:
                raise InvalidState(f"stock would exceed {values.MAX_STOCK}")
            return _stock_change(
                product,
                command,
                StockChange.RESTOCK,
                product.on_hand + quantity,
                product.reserved,
                None,
            )
        case ReserveStock():
            product = _existing(state, command.sku)
            if command.quantity > product.available:
                raise InsufficientStock(
                    f"only {product.available} of {command.sku!r} available,"
                    f" {command.quantity} asked"
                )
            return _stock_change(
                product,
                command,
                StockChange.RESERVATION,
                product.on_hand,
                product.reserved + command.quantity,
                command.order_id,
            )
        case ReleaseStock():
            product = _existing(state, command.sku)
            return _stock_change(
                product,
                command,
                StockChange.RELEASE,
                product.on_hand,
                max(product.reserved - command.quantity, 0),
                command.order_id,
            )
        case ShipStock():
            product = _existing(state, command.sku)
            return _stock_change(
                product,
                command,
                StockChange.SHIPMENT,
                product.on_hand - command.quantity,
                max(product.reserved - command.quantity, 0),
                command.order_id,
            )
        case FlagLowStock():
            command.actor.require_system()
            sku = values.sku(command.sku)
            product = _existing(state, sku)
            if product.available >= command.threshold:
                raise InvalidState(f"{product.available} available: not below the threshold")
            if product.low_below is not None:
                raise InvalidState("already flagged low on stock since it fell below")
            return [LowStockReached(product.sku, product.available, command.threshold, command.at)]
        case _:
            assert_never(command)


def _references(event: ProductEvent) -> tuple[str, ...]:
    """A stock move for an order refers to that order."""
    if isinstance(event, InventoryUpdated) and event.order_id is not None:
        return (f"order-{event.order_id}",)
    return ()


AGGREGATE = AggregateType(
    prefix=STREAM_PREFIX,
    events=(ProductRegistered, InventoryUpdated, LowStockReached),
    evolve=evolve,
    initial=initial_state,
    state_type=Product,
    subject=lambda event: stream_id(event.sku),
    references=_references,
)
