"""What every resolver gets: the caller and the application's services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import strawberry
from strawberry.types import Info as StrawberryInfo

from application.auth import AuthError, Principal
from application.shop import Shop
from domain.errors import InvalidInput
from domain.values import Actor
from eventstore.notify import Signal
from eventstore.store import EventStore
from projections.live import LiveViews
from projections.watch import ProjectionWatch
from schema.cursors import Cursors
from schema.scalars import MAX_POSITION


class Unauthenticated(AuthError):
    code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Services:
    """Shared by every request of one process."""

    shop: Shop
    store: EventStore
    """The log, for the `events` query and subscription (read only)."""
    pool: asyncpg.Pool
    """The read side: the read models' queries run on it."""
    watch: ProjectionWatch
    cursors: Cursors
    read_wait_seconds: float
    live: LiveViews
    log_signal: Signal


@dataclass
class Context:
    services: Services
    principal: Principal | None
    auth_error: str | None = None

    @property
    def shop(self) -> Shop:
        return self.services.shop

    @property
    def pool(self) -> asyncpg.Pool:
        return self.services.pool

    @property
    def cursors(self) -> Cursors:
        return self.services.cursors

    @property
    def actor(self) -> Actor:
        """The signed-in caller, or UNAUTHENTICATED."""
        if self.principal is None:
            raise Unauthenticated(self.auth_error or "sign in: Authorization: Bearer <token>")
        return Actor(self.principal.sub, self.principal.role)

    def require_user(self) -> Actor:
        return self.actor

    async def at_least(self, projection: str, position: int | None) -> None:
        """Wait, boundedly, until `projection` has applied the log up to `position`."""
        if position is None or position is strawberry.UNSET:
            return
        if not 0 <= position <= MAX_POSITION:
            raise InvalidInput("atLeast must be a log position")
        await self.services.watch.wait(projection, position, self.services.read_wait_seconds)


Info = StrawberryInfo[Context, Any]
