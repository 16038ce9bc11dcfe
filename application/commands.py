"""The commands the application handles, in the imperative, as values: what a caller asks,
not yet validated (the handlers and deciders do that). Each names the state its result
carries; `application/shop.py` maps each to its handler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain import order, product
from domain.ids import OrderId
from domain.values import Actor

S = TypeVar("S")


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
