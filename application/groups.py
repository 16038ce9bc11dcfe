"""Group commit: the commands that arrive while another is appending wait, then are decided
in turn, each on the state the previous ones left, and appended together in one statement.

Why: a flash sale puts every order on one product's stream, and each order must see the
stock the previous one left, so appends to that stream are serial: one round trip and one
WAL flush each, whatever the number of cores or connections. Deciding the waiting commands
one after another on the cached state and writing them at once pays the round trip and the
flush once per group, and the same holds for busy commands on different streams. Each
command keeps its own events, result, error and idempotency key: a command its turn refuses
is decided again alone, after the group, on fresh state (as a refusal on cached state always
is), and fails alone; a conflict from another process, or an idempotency key seen before,
writes nothing of the group and every member runs alone. The rejected alternative, a stream
lock per command and an append each, ran a hot product at about half the rate of orders
spread over 100 products on this machine, and both at a tenth of raw appends.

A handler keeps two chains: one for clients' commands and one for the server's own (the
reactions' timers), so that a storm of expiries coming due at once never queues a customer's
order behind its groups; the two meet only on a stream both touch, under its lock.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from application.idempotency import Idempotency
from domain.aggregate import DomainEvent

if TYPE_CHECKING:
    from application.decision import Executed, Loaded

log = logging.getLogger(__name__)

MAX_GROUP = 64
"""Commands appended together at most; the rest wait for the next group."""


@dataclass(eq=False)
class Member:
    """A command waiting to join the next group."""

    command_name: str
    streams: Sequence[str]
    new_streams: frozenset[str]
    decide: Callable[[Loaded], dict[str, list[DomainEvent]]]
    idempotency: Idempotency | None
    metadata: dict[str, Any]
    outcome: asyncio.Future[Executed | None]
    """Set by the group: what the command did, or None to run it alone."""


class Groups:
    """Whether a command is appending, and who waits to go next.

    A command that finds nobody appending runs alone and marks the process busy
    (`begin`/`end`); commands that arrive meanwhile `join`. When the busy command ends, the
    waiting ones are committed as one group by `commit`, in a task of their own, so that
    no member's cancellation (a client gone) can abandon the others; more commands may
    wait behind that group in turn."""

    def __init__(self, commit: Callable[[list[Member]], Awaitable[None]]) -> None:
        self._commit = commit
        self._waiting: list[Member] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def busy(self) -> bool:
        return self._waiting is not None

    def begin(self) -> None:
        self._waiting = []

    def join(self, member: Member) -> None:
        assert self._waiting is not None
        self._waiting.append(member)

    def end(self) -> None:
        waiting = [m for m in self._waiting or [] if not m.outcome.done()]
        self._waiting = None
        if not waiting:
            return
        self._waiting = waiting[MAX_GROUP:]
        # In a context of its own: not the request id of the command that happened to end.
        task = asyncio.get_running_loop().create_task(
            self._run(waiting[:MAX_GROUP]), context=contextvars.Context()
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, members: list[Member]) -> None:
        try:
            await self._commit(members)
        except Exception as exc:  # members left unanswered run alone and meet it themselves
            log.warning("a group of %d commands failed: %r", len(members), exc)
        finally:
            for member in members:
                if not member.outcome.done():
                    member.outcome.set_result(None)
            self.end()
