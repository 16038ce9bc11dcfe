"""Which live subscriptions identical subscribers may share one execution of, declared on the
subscription field itself: `@shared("role")` when the view depends only on the document, its
variables and the caller's role; `@shared("user")` when it also depends on who the caller is.
A subscription that is not declared is never shared: `events`, which each subscriber catches
up from its own position, and the feeds of several views (`myOrders`, `orders`), since a
shared execution keeps only its newest payload for a slow member, and a feed's newest message
does not replace one about another order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

F = TypeVar("F", bound=Callable[..., object])

Scope = Literal["role", "user"]
SHARED: dict[str, Scope] = {}
"""GraphQL field name -> what a shared execution is keyed by besides the document."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def shared(scope: Scope) -> Callable[[F], F]:
    def declare(resolver: F) -> F:
        SHARED[_camel(resolver.__name__)] = scope
        return resolver

    return declare
