"""The shop, as one facade: where every command goes (`await shop.handle(PlaceOrder(...))`)
and which reactions run. It holds no feature's logic: each feature's commands and handlers
are its own module (`application/products.py`, `orders.py`, `reviews.py`), each handler
registered beside its command (`@handles`), so a command that exists has its handler here."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from application.commands import HANDLERS, Command, Policy, S
from application.decision import CommandResult
from application.expiry import OrderExpiry
from application.handler import CommandHandler
from application.low_stock import LowStock
from application.reactions import Reaction
from domain.errors import DomainError
from eventstore.store import EventStore
from support import metrics


def reactions(policy: Policy) -> list[Reaction]:
    """The shop's reactions (application/reactions.py), as the policy configures them. A new
    reaction is a module like `expiry.py` and one entry here."""
    found: list[Reaction] = [OrderExpiry()]
    if policy.low_stock_threshold > 0:
        found.append(LowStock(policy.low_stock_threshold))
    return found


class Shop:
    """Where a command goes: `await shop.handle(PlaceOrder(actor, lines))`."""

    def __init__(
        self,
        store: EventStore,
        clock: Callable[[], datetime] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.handler = CommandHandler(store, clock, policy)

    async def handle(self, command: Command[S]) -> CommandResult[S]:
        name = type(command).__name__
        started = time.perf_counter()
        outcome = "INTERNAL"
        try:
            result: CommandResult[S] = await HANDLERS[type(command)](self.handler, command)
            outcome = "replayed" if result.replayed else "ok"
            return result
        except DomainError as exc:
            outcome = exc.code
            raise
        finally:
            metrics.COMMANDS.labels(name, outcome).inc()
            metrics.COMMAND_SECONDS.labels(name).observe(time.perf_counter() - started)
