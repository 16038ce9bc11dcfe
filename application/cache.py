"""The latest known state of recently used streams, so that commands on a hot stream need no
read before their append."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CachedState:
    version: int
    state: Any
    since_snapshot: int


class StateCache:
    """The latest state this process knows of each recently used stream, so that a command on
    a hot stream (a product every order reserves from) needs no read before its append.

    Never trusted blindly: the append still carries the expected version, so a stream changed
    by another process fails with a conflict, and the command reloads and decides again; a
    decision that fails on cached state is also retried on fresh state before it is answered.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: OrderedDict[str, CachedState] = OrderedDict()
        self._capacity = capacity

    def get(self, stream: str) -> CachedState | None:
        entry = self._entries.get(stream)
        if entry is not None:
            self._entries.move_to_end(stream)
        return entry

    def put(self, stream: str, entry: CachedState) -> None:
        self._entries[stream] = entry
        self._entries.move_to_end(stream)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def drop(self, streams: Sequence[str]) -> None:
        for stream in streams:
            self._entries.pop(stream, None)
