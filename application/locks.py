"""Per-stream locks for the commands of one process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence


class StreamLocks:
    """Per-stream locks for commands within one process, taken in sorted order."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, stream_ids: Sequence[str]) -> AsyncIterator[None]:
        ordered = sorted(set(stream_ids))
        for s in ordered:
            lock, users = self._locks.get(s, (asyncio.Lock(), 0))
            self._locks[s] = (lock, users + 1)
        acquired: list[asyncio.Lock] = []
        try:
            for s in ordered:
                lock = self._locks[s][0]
                await lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in acquired:
                lock.release()
            for s in ordered:
                lock, users = self._locks[s]
                if users == 1:
                    del self._locks[s]
                else:
                    self._locks[s] = (lock, users - 1)
