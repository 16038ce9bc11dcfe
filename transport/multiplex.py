"""Identical live subscriptions share one execution: subscribers of the same document, with
the same variables and the same authorisation, get the same serialised payloads, as Hasura
multiplexes its live queries. The view is executed and serialised once per change, however
many subscribe to it; each subscriber keeps only a newest-wins slot of bytes."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

import orjson
from graphql import ExecutionResult

from schema.errors import format_error
from schema.results import as_graphql_error, serialised
from support.background import close_quietly
from support.mailbox import Mailbox

log = logging.getLogger(__name__)

Start = Callable[[], Awaitable[AsyncIterator[ExecutionResult] | ExecutionResult]]


class Member:
    """One subscriber of a shared execution: a newest-wins mailbox of serialised payloads."""

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self._sequence = itertools.count()
        self._mailbox: Mailbox[tuple[int, bytes]] = Mailbox(rank=lambda item: item[0])

    def offer(self, payload: bytes) -> None:
        self._mailbox.offer(None, (next(self._sequence), payload))

    def end(self) -> None:
        self._mailbox.close()

    async def take(self) -> bytes | None:
        """The newest payload not yet taken; None once the shared execution has ended."""
        item = await self._mailbox.take()
        return None if item is None else item[1]


class Shared:
    def __init__(self, start: Start, on_done: Callable[[Shared], None]) -> None:
        self.members: set[Member] = set()
        self.last: bytes | None = None
        self.ended: tuple[str, bytes] | None = None
        """("complete", b"") or ("error", serialised errors) once the execution is over."""
        self._on_done = on_done
        self._task = asyncio.create_task(self._pump(start))

    def join(self) -> Member:
        member = Member(self)
        if self.last is not None:
            member.offer(self.last)
        if self.ended is not None:
            member.end()
        self.members.add(member)
        return member

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        if not self.members and self.ended is None:
            self._task.cancel()

    def _end(self, kind: str, payload: bytes = b"") -> None:
        self.ended = (kind, payload)
        for member in self.members:
            member.end()
        self._on_done(self)

    async def _pump(self, start: Start) -> None:
        try:
            stream = await start()
            if isinstance(stream, ExecutionResult):
                errors = [format_error(e) for e in stream.errors or []]
                self._end("error", orjson.dumps(errors))
                return
            try:
                async for result in stream:
                    self.last = serialised(result)
                    for member in list(self.members):
                        member.offer(self.last)
                    if result.errors and result.data is None:
                        break
            finally:
                await close_quietly(stream)
            self._end("complete")
        except asyncio.CancelledError:
            self._end("complete")
            raise
        except Exception as exc:
            self._end("error", orjson.dumps([format_error(as_graphql_error(exc))]))


class Multiplexer:
    def __init__(self) -> None:
        self._shared: dict[Hashable, Shared] = {}

    def join(self, key: Hashable, start: Start) -> Member:
        shared = self._shared.get(key)
        if shared is None or shared.ended is not None:
            shared = Shared(start, lambda done: self._forget(key, done))
            self._shared[key] = shared
        return shared.join()

    def _forget(self, key: Hashable, done: Shared) -> None:
        if self._shared.get(key) is done:
            del self._shared[key]

    def __len__(self) -> int:
        return len(self._shared)
