"""Low stock, a reaction whose deadline is now: a stock move that takes a product's available
stock below the threshold schedules a timer due at once, and the timer asks the product to
flag itself (`LowStockReached`), which it does once per crossing. Going through a timer
rather than a direct call makes the effect as durable as a deadline's: a crash between the
event and the flag loses nothing and repeats nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from application import products
from application.reactions import Effect, Schedule, Timer
from domain.aggregate import DomainEvent
from domain.product import InventoryUpdated, crossed_below
from domain.values import Actor
from eventstore.events import RecordedEvent

DEFAULT_THRESHOLD = 5
"""EVENTGRAPH_LOW_STOCK_THRESHOLD's default; 0 turns the reaction off."""


class LowStock:
    name: ClassVar[str] = "low-stock"
    events: ClassVar[tuple[type, ...]] = (InventoryUpdated,)

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold

    def react(self, event: DomainEvent, recorded: RecordedEvent) -> Sequence[Effect]:
        if isinstance(event, InventoryUpdated) and crossed_below(event, self.threshold):
            # One timer per product: a second crossing before it fired only moves it.
            data = {"sku": event.sku, "threshold": self.threshold}
            return (Schedule(event.sku, recorded.occurred_at, data),)
        return ()

    def command(self, timer: Timer) -> products.FlagLowStock:
        return products.FlagLowStock(
            Actor.system(self.name),
            timer.data["sku"],
            timer.data["threshold"],
            timer.idempotency_key,
        )
