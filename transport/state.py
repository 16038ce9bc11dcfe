"""What the transport keeps for the life of the application, typed: made with the app (what
must exist before it starts serving: the open sessions, for draining, and the per-user
counts), and completed by the app's lifespan (what needs the database: the executor, the
token verifier, the services)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from application.auth import TokenVerifier
from schema.context import Services
from schema.executor import Executor
from transport.multiplex import Multiplexer
from transport.origins import Origins

if TYPE_CHECKING:
    from starlette.applications import Starlette


class OpenSession(Protocol):
    """A WebSocket session, as shutdown sees it."""

    async def drain(self) -> None: ...


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
    serving: Serving | None = None
    """Set by the lifespan once the database is open; requests arrive only after."""

    @property
    def ready(self) -> Serving:
        assert self.serving is not None, "the application's lifespan has not started"
        return self.serving


def transport_state(app: Starlette) -> TransportState:
    state: TransportState = app.state.transport
    return state
