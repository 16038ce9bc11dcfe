"""The commit-safe frontier of the log: the highest position below which every event is
either committed and visible, or will never exist.

Positions come from a sequence at insert time, so a transaction that drew position 7 may
commit after one that drew position 8. A reader that took "everything after my checkpoint"
could pass 7 while it is still in flight and lose it forever. Serialising appends with a lock
would fix that at about a quarter of the throughput, so instead readers never pass a hole in
the positions until the hole is proven permanent:

* `append_events` assigns its transaction id before it draws any position. So when a hole is
  seen, whoever holds it already has a transaction id, and, if it is still running, that id
  shows in `pg_stat_activity.backend_xid`. The hole's bound is one past the highest such id
  (and at least the snapshot's xmax, for those that ended). A snapshot's xmax alone is not a
  bound: it is one past the latest *completed* transaction, and a younger transaction may
  still be running with a higher id.
* Once a later snapshot's xmin reaches that bound, every transaction below it has ended (xmin
  never exceeds xmax, so this also means every one of them completed). If the position is
  still missing, its transaction rolled back (or the sequence skipped it): the hole is
  permanent and readers may move past it.

Holes are rare (a rolled-back append, a crash) and usually proven within milliseconds, so
readers pay nothing in the common case. Unlike reading only below `pg_snapshot_xmin`, an
unrelated long write transaction does not hold readers back unless it holds a position.
"""

from __future__ import annotations

import asyncio
from typing import Final

import asyncpg

SCAN_WINDOW: Final = 10_000

_BOUND = """
SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax,
       array(SELECT backend_xid::text::bigint FROM pg_stat_activity
              WHERE backend_xid IS NOT NULL) AS running
"""

_SCAN = """
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
       array(SELECT position FROM eventgraph.events
              WHERE position > $1 ORDER BY position LIMIT $2) AS positions
"""


class LogFrontier:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._safe = 0
        self._holes: dict[int, int] = {}
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[int] | None = None

    @property
    def safe_position(self) -> int:
        """Every event at or below this position is readable; nothing more will appear there."""
        return self._safe

    @property
    def waiting_on_holes(self) -> bool:
        """True while a hole holds the frontier back: check again soon, it resolves without
        any further notification."""
        return bool(self._holes)

    async def refresh(self) -> int:
        """Advance as far as is safe now. Callers that arrive while a scan is in flight share
        its result: it is at worst a little behind, never unsafe, and whoever misses an event
        that committed meanwhile is woken again by that commit."""
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
            self._inflight.add_done_callback(self._clear_inflight)
        return await asyncio.shield(self._inflight)

    def _clear_inflight(self, _: asyncio.Future[int]) -> None:
        self._inflight = None

    async def _refresh(self) -> int:
        async with self._lock:
            while True:
                row = await self._pool.fetchrow(_SCAN, self._safe, SCAN_WINDOW)
                assert row is not None
                positions: list[int] = row["positions"]
                new_holes = self._advance(row["xmin"], positions)
                if new_holes:
                    bound = await self._bound()
                    for hole in new_holes:
                        self._holes[hole] = bound
                if len(positions) < SCAN_WINDOW or self._holes:
                    return self._safe

    async def _bound(self) -> int:
        """One past the highest transaction id that may be running now."""
        row = await self._pool.fetchrow(_BOUND)
        assert row is not None
        xmax: int = row["xmax"]
        bound = xmax
        epoch = xmax >> 32
        for xid32 in row["running"]:
            full = (epoch << 32) | xid32  # backend_xid is 32 bits: put it in xmax's epoch
            if full > xmax + 2**31:
                full -= 2**32
            elif full < xmax - 2**31:
                full += 2**32
            bound = max(bound, full + 1)
        return bound

    def _advance(self, xmin: int, positions: list[int]) -> list[int]:
        """Move past what is safe; return the holes seen for the first time (their bound is
        taken after this scan, which only makes it later, so still a bound)."""
        expected = self._safe + 1
        for position in positions:
            while expected < position:
                bound = self._holes.get(expected)
                if bound is None:
                    self._settle(expected - 1)
                    return list(range(expected, position))
                if xmin < bound:
                    self._settle(expected - 1)
                    return []
                del self._holes[expected]
                expected += 1
            expected = position + 1
        self._settle(expected - 1)
        return []

    def _settle(self, safe: int) -> None:
        self._safe = safe
        for hole in [h for h in self._holes if h <= safe]:
            del self._holes[hole]
