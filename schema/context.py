"""What every resolver gets: the caller and the application's services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strawberry.types import Info as StrawberryInfo

from domain.values import Actor
from eventgraph.auth import AuthError, Principal
from eventgraph.commands import Shop


class Unauthenticated(AuthError):
    code = "UNAUTHENTICATED"


@dataclass
class Context:
    shop: Shop
    principal: Principal | None
    auth_error: str | None = None

    @property
    def actor(self) -> Actor:
        """The signed-in caller, or UNAUTHENTICATED."""
        if self.principal is None:
            raise Unauthenticated(self.auth_error or "sign in: Authorization: Bearer <token>")
        return Actor(self.principal.sub, self.principal.role)


Info = StrawberryInfo[Context, Any]
