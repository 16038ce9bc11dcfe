"""Long-running loops owned by an object: started once, cancelled and awaited on stop; and
the same, reconnecting with backoff after each lost connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BackgroundLoop:
    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class Backoff:
    """The wait between attempts to reconnect: doubling from `first` up to `cap`, and back
    to `first` once a connection is up again (`reset`)."""

    def __init__(self, first: float = 0.1, cap: float = 2.0) -> None:
        self._first, self._cap = first, cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    async def wait(self) -> None:
        await asyncio.sleep(self._next)
        self._next = min(self._next * 2, self._cap)


def reconnecting(
    name: str,
    session: Callable[[Backoff], Coroutine[Any, Any, None]],
    *,
    expected: tuple[type[BaseException], ...] = (),
    first: float = 0.1,
    cap: float = 2.0,
) -> BackgroundLoop:
    """A loop that runs `session` (connect, work until the connection is lost, clean up) for
    ever: an `expected` failure is logged as a warning, any other with its traceback, and
    either way the next attempt follows after the backoff. `session` calls `reset()` on the
    backoff it is given once it is connected."""

    async def run() -> None:
        backoff = Backoff(first, cap)
        while True:
            try:
                await session(backoff)
            except asyncio.CancelledError:
                raise
            except expected as exc:
                log.warning("%s lost its connection, reconnecting: %r", name, exc)
            except Exception:  # a background loop must outlive any fault
                log.exception("%s failed; starting it again", name)
            await backoff.wait()

    return BackgroundLoop(name, run)


async def close_quietly(stream: object) -> None:
    """Close an async generator (a subscription's stream) whatever state it is in: its own
    `finally` blocks run, and an error while closing is not the caller's."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
