"""What every resolver gets: the caller and the application's services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from application.auth import AuthError, Principal
from application.commands import Command
from application.decision import CommandResult
from application.shop import Shop
from domain.errors import InvalidInput
from domain.values import Actor
from eventstore.notify import Signal
from eventstore.store import EventStore
from projections.live import LiveViews
from projections.watch import ProjectionWatch
from schema.cursors import Cursors
from schema.scalars import MAX_POSITION

K = TypeVar("K")
S = TypeVar("S")
V = TypeVar("V")


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
    session_at_least: int = 0
    """The operation's `extensions.atLeast` (or `EventGraph-At-Least`): every read in it
    waits for at least this position, whatever its own `atLeast` says."""
    appended: int | None = None
    """The last position a command of this operation appended (`extensions.position`)."""

    _loaders: dict[object, DataLoader[Any, Any]] = field(default_factory=dict, repr=False)

    def loader(
        self, read: Callable[[asyncpg.Pool, list[K]], Awaitable[list[V]]]
    ) -> DataLoader[K, V]:
        """What `read` (many keys, one query, on the read side) gives for keys asked in one
        tick of resolvers (a page of products asking each for its rating). Not cached: a live
        subscription keeps its context, and must see newer views."""
        found = self._loaders.get(read)
        if found is None:
            pool = self.services.pool
            found = DataLoader(load_fn=lambda keys: read(pool, list(keys)), cache=False)
            self._loaders[read] = found
        return found

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

    async def handle(self, command: Command[S]) -> CommandResult[S]:
        """Run a command, remembering its position for the response's `extensions.position`
        (a replayed idempotency key gives the first result's, which the caller's session
        must reach just the same)."""
        result = await self.services.shop.handle(command)
        self.appended = max(self.appended or 0, result.position)
        return result

    async def at_least(self, projection: str, position: int | None = None) -> None:
        """Wait, boundedly, until `projection` has applied the log up to `position` and the
        session's position; every read of the read models comes through here."""
        if position is None or position is strawberry.UNSET:
            position = 0
        if not 0 <= position <= MAX_POSITION:
            raise InvalidInput("atLeast must be a log position")
        position = max(position, self.session_at_least)
        if position > self.services.watch.position(projection):
            try:
                await self.services.watch.wait(
                    projection, position, self.services.read_wait_seconds
                )
            except TimeoutError:
                last = await self.services.store.last_position()
                if position > last:  # never reachable: say why, so a client can start over
                    raise TimeoutError(
                        f"atLeast {position} is beyond the end of the event log ({last}):"
                        " a position from another database, or from before a reset?"
                    ) from None
                raise

    async def require_in_log(self, position: int, name: str) -> None:
        """A position beyond the end of the log (from another database, or before a reset)
        can never be reached: say so rather than wait for it."""
        if position > 0 and position > await self.services.store.last_position():
            raise InvalidInput(
                f"{name} {position} is beyond the end of the event log: a position from"
                " another database or from before a reset? Start again from 0"
            )


Info = StrawberryInfo[Context, Any]
