"""What the transport keeps for the life of the application, typed: made with the app (what
must exist before it starts serving: the open sessions, for draining, and the per-user
counts), and completed by the app's lifespan (what needs the database: the executor, the
token verifier, the services)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

from graphql import ExecutionResult, GraphQLError

from application.auth import Principal, TokenVerifier
from schema.context import Services
from schema.executor import Executor
from transport.multiplex import Multiplexer
from transport.origins import Origins

if TYPE_CHECKING:
    from starlette.applications import Starlette


class OpenSession(Protocol):
    """A WebSocket session, as shutdown sees it."""

    async def drain(self) -> None: ...


DEFAULT_MAX_OPERATIONS_PER_USER: Final = 8
DEFAULT_MAX_SUBSCRIPTIONS_PER_USER: Final = 256
SLOT_WAIT_SECONDS: Final = 5.0


class OverLimit(Exception):
    """A user's operation beyond a per-user limit of this process. It is answered with
    BAD_REQUEST, as the per-connection subscription cap is: UNAVAILABLE would promise a
    database fault (and its message says so), while here the client must send less at once."""


class _User:
    __slots__ = ("held", "slots")

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.held = 0
        """Operations running or waiting for a slot."""


class UserSlots:
    """At most `limit` queries and mutations of one user execute at once in this process
    (HTTP and WebSocket together), so that one user's heavy operations cannot take every
    pooled connection from everyone else. As many again wait, at most SLOT_WAIT_SECONDS,
    for a slot (a burst of small commands is absorbed, in order); beyond that, or after the
    wait, OverLimit. 0: no limit. Anonymous operations are not counted here (they are the
    connection caps' concern)."""

    def __init__(self, limit: int, wait_seconds: float = SLOT_WAIT_SECONDS) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._users: dict[str, _User] = {}

    def __len__(self) -> int:
        return len(self._users)

    @contextlib.asynccontextmanager
    async def hold(self, sub: str | None) -> AsyncIterator[None]:
        if sub is None or self.limit <= 0:
            yield
            return
        user = self._users.get(sub) or self._users.setdefault(sub, _User(self.limit))
        if user.held >= 2 * self.limit:
            raise OverLimit(self._refusal())
        user.held += 1
        try:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    await user.slots.acquire()
            except TimeoutError:
                raise OverLimit(self._refusal()) from None
            try:
                yield
            finally:
                user.slots.release()
        finally:
            user.held -= 1
            if user.held == 0:
                del self._users[sub]

    def _refusal(self) -> str:
        return (
            f"too many operations of this user at once (at most {self.limit} running and"
            f" {self.limit} waiting per server process): retry once some have finished"
        )


@dataclass(frozen=True)
class Serving:
    executor: Executor
    tokens: TokenVerifier
    services: Services


@dataclass
class TransportState:
    max_connections_per_user: int
    origins: Origins
    sessions: set[OpenSession] = field(default_factory=set)
    connections_per_user: Counter[str] = field(default_factory=Counter)
    multiplexer: Multiplexer = field(default_factory=Multiplexer)
    operations: UserSlots = field(
        default_factory=lambda: UserSlots(DEFAULT_MAX_OPERATIONS_PER_USER)
    )
    max_subscriptions_per_user: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_USER
    """Open subscriptions of one user across all its sockets in this process (0: no limit);
    each socket has its own cap besides (MAX_SUBSCRIPTIONS)."""
    subscriptions_per_user: Counter[str] = field(default_factory=Counter)
    serving: Serving | None = None
    """Set by the lifespan once the database is open; requests arrive only after."""

    @property
    def ready(self) -> Serving:
        assert self.serving is not None, "the application's lifespan has not started"
        return self.serving


def limit_per_user(state: TransportState, *, operations: int, subscriptions: int) -> TransportState:
    """Set the per-user limits of fair use (the settings EVENTGRAPH_MAX_OPERATIONS_PER_USER
    and EVENTGRAPH_MAX_SUBSCRIPTIONS_PER_USER)."""
    state.operations = UserSlots(operations)
    state.max_subscriptions_per_user = subscriptions
    return state


def transport_state(app: Starlette) -> TransportState:
    state: TransportState = app.state.transport
    return state


def over_limit(refusal: OverLimit) -> GraphQLError:
    return GraphQLError(str(refusal), extensions={"code": "BAD_REQUEST"})


async def within_limits(
    app: Starlette,
    principal: Principal | None,
    operation: Coroutine[Any, Any, ExecutionResult],
) -> ExecutionResult:
    """Run a query or mutation over HTTP within its user's share (`UserSlots`), or answer
    that it is over it, without running it."""
    started = False
    try:
        async with transport_state(app).operations.hold(principal.sub if principal else None):
            started = True
            return await operation
    except OverLimit as refusal:
        if started:
            raise
        return ExecutionResult(None, [over_limit(refusal)])
    finally:
        if not started:  # refused or cancelled while waiting: it never ran
            operation.close()
