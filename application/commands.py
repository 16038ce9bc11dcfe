"""Commands, as values: what a caller asks, not yet validated (the handlers and deciders do
that). Each feature declares its own commands beside their handlers (`application/products.py`,
`orders.py`, `reviews.py`) and registers each handler with `@handles(TheCommand)`, so a command
that exists always has its handler: `Shop.handle` looks it up in `HANDLERS`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from domain.values import Actor

if TYPE_CHECKING:
    from application.decision import CommandResult
    from application.handler import CommandHandler

    Handler = Callable[[CommandHandler, Any], Awaitable[CommandResult[Any]]]

S = TypeVar("S")
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])

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


HANDLERS: dict[type[Command[Any]], Handler] = {}
"""Each command's handler: `handler(command_handler, command) -> CommandResult`."""


def handles(command: type[Command[Any]]) -> Callable[[H], H]:
    """Register the decorated function as `command`'s one handler."""

    def register(handler: H) -> H:
        if command in HANDLERS:
            raise RuntimeError(f"{command.__name__} already has a handler")
        HANDLERS[command] = handler
        return handler

    return register
