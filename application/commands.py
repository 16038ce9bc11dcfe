"""The commands the application handles, in the imperative, as values: what a caller asks,
not yet validated (the handlers and deciders do that). Each names the state its result
carries; `application/shop.py` maps each to its handler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

from domain import order, product
from domain.ids import OrderId
from domain.values import Actor

S = TypeVar("S")

PAYMENT_WINDOW = timedelta(seconds=1800)
"""EVENTGRAPH_PAYMENT_WINDOW_SECONDS' default."""


@dataclass(frozen=True)
class Policy:
    """The shop's settings that commands decide by (from the environment, at start)."""

    payment_window: timedelta | None = PAYMENT_WINDOW
    """How long a placed order waits for its payment; None: forever."""
    low_stock_threshold: int = 5
    """Available stock below which a product is flagged low on stock; 0: never."""


class Command(Generic[S]):
    """A command whose result carries a state of type S."""

    actor: Actor


@dataclass(frozen=True)
class RegisterProduct(Command[product.Product]):
    actor: Actor
    sku: str
    name: str
    unit_price: object
    initial_stock: int = 0


@dataclass(frozen=True)
class RestockProduct(Command[product.Product]):
    actor: Actor
    sku: str
    quantity: int


@dataclass(frozen=True)
class PlaceOrder(Command[order.Order]):
    actor: Actor
    lines: Sequence[tuple[str, int]]
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PayOrder(Command[order.Order]):
    actor: Actor
    order_id: OrderId
    amount: object
    idempotency_key: str | None = None


@dataclass(frozen=True)
class ShipOrder(Command[order.Order]):
    actor: Actor
    order_id: OrderId


@dataclass(frozen=True)
class CancelOrder(Command[order.Order]):
    actor: Actor
    order_id: OrderId
    reason: str


@dataclass(frozen=True)
class ExpireOrder(Command[order.Order]):
    """The server's own (the order-expiry reaction): never from a client."""

    actor: Actor
    order_id: OrderId
    idempotency_key: str | None = None


@dataclass(frozen=True)
class FlagLowStock(Command[product.Product]):
    """The server's own (the low-stock reaction): never from a client."""

    actor: Actor
    sku: str
    threshold: int
    idempotency_key: str | None = None
