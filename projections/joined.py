"""Live views over several tables, of one read model or of several: a customer's wishlist
shows each wished product's stock, so it changes when the wishlist changes and when one of
its products does, a row of another read model.

A `JoinedTopic` declares the view (one SQL select of the rows of some keys, and how rows
make a view) and what it `Follows`: each a view whose rows belong to the topic's keys,
through a column of their own, or through a mapping table (`Via`: wishes map a sku to the
customers who wish it). Its subscribers are served like any live view (projections/live.py),
but a refresh follows every read model named: each followed table is read for the rows
changed after what was read of it (by its index on `position`), these are mapped to the
watched keys, and the views of those keys are read again, whole, in the same statement,
with every read model's position. A view changes only if one of its rows did.

Each view is stamped `position`: its own read model's position when read (read your own
writes, as every view). Its `changed` is the sum of the positions of all the read models it
was read from: it grows whenever one of them moved, and only a change makes a refresh read a
view again, so a subscriber's slot (which orders views by `changed`) passes every change and
never goes back. One position could not: a change to a product can be applied after a
change to the wishlist that comes later in the log, and must not look older than it.

A followed table must stamp every change with `position`; a deleted row signals nothing, so
follow a table of one row per key (the wishlist's own row) for what deletes change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import asyncpg

from projections.slice import read_position

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Via:
    """A mapping table (a view of `readmodel`): its rows whose column `on` equals the changed
    row's column `on` belong to the topic's key in its column `key`."""

    view: str
    on: str
    key: str


@dataclass(frozen=True)
class Follows:
    """The topic's view of a key also changes when rows of `readmodel.<view>` change: rows
    whose column `key` is the topic's key, or that map to it through `via`. `model`: the read
    model whose projection writes `view` (None: the topic's own)."""

    view: str
    key: str | None = None
    via: Via | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if (self.key is None) == (self.via is None):
            raise ValueError(f"follows {self.view}: give `key` or `via`, one of them")


Of = Callable[[str, Sequence[asyncpg.Record], int, int], Any]
"""`of(key, rows, position, changed)`: the view of `key` from its rows (none: an empty view)."""


@dataclass(frozen=True, eq=False)
class JoinedTopic:
    """A live view read by one SQL `select` of the rows of several keys: `{keys}` in it stands
    for the array of keys (text), and its rows carry the key in column `key`."""

    name: str
    model: str
    select: str
    key: str
    of: Of
    follows: tuple[Follows, ...]
    slot_key: Callable[[Any, Any], Any] = field(default=lambda key, _view: key)

    def __post_init__(self) -> None:
        if not self.follows or "{keys}" not in self.select:
            raise ValueError(f"{self.name}: it follows no table, or its select has no {{keys}}")

    @cached_property
    def models(self) -> tuple[str, ...]:
        """The read models it is read from, its own first."""
        named = [self.model, *(f.model or self.model for f in self.follows)]
        return tuple(dict.fromkeys(named))

    @cached_property
    def statement(self) -> str:
        """$1 the watched keys, $2 the keys read whole, then for each `follows` the position
        it has been read up to."""
        changed = []
        for i, follows in enumerate(self.follows, start=3):
            if follows.via is None:
                changed.append(
                    f"SELECT t.{follows.key} FROM readmodel.{follows.view} t"
                    f" WHERE t.position > ${i} AND t.{follows.key} = any($1::text[])"
                )
            else:
                via = follows.via
                changed.append(
                    f"SELECT m.{via.key} FROM readmodel.{follows.view} t"
                    f" JOIN readmodel.{via.view} m ON m.{via.on} = t.{via.on}"
                    f" WHERE t.position > ${i} AND m.{via.key} = any($1::text[])"
                )
        dirty = " UNION ".join(changed)
        reads = ", ".join(
            f"{read_position(model).removesuffix('AS read_position')} AS kit_read_{i}"
            for i, model in enumerate(self.models)
        )
        select = self.select.replace("{keys}", "ARRAY(SELECT k FROM keys)")
        return f"""
WITH dirty (k) AS ({dirty}),
     keys (k) AS (SELECT k FROM dirty UNION SELECT unnest($2::text[]))
SELECT {reads}, (SELECT coalesce(array_agg(k), '{{}}') FROM dirty) AS kit_dirty, r.*
  FROM (VALUES (1)) AS one (x) LEFT JOIN ({select}) r ON true"""

    async def changes(
        self, pool: asyncpg.Pool, watched: Sequence[str], since: Sequence[int], whole: Sequence[str]
    ) -> tuple[tuple[int, ...], set[str], dict[str, Any]]:
        """The views of the `watched` keys with a row changed after `since` (one position per
        `follows`) and of the keys read `whole`; with each read model's position, the keys
        that changed, and the views by key."""
        rows = await pool.fetch(self.statement, list(watched), list(whole), *since)
        head = rows[0]
        read = tuple(head[f"kit_read_{i}"] for i in range(len(self.models)))
        if any(position is None for position in read):
            raise LookupError(f"{self.name}: a read model it reads is not set up: {read}")
        dirty = set(head["kit_dirty"])
        by_key: dict[str, list[asyncpg.Record]] = {k: [] for k in (*dirty, *whole)}
        for row in rows:
            if row[self.key] is not None:
                by_key.setdefault(row[self.key], []).append(row)
        position, changed = read[0], sum(read)
        views = {key: self.of(key, found, position, changed) for key, found in by_key.items()}
        return read, dirty, views

    async def read(self, pool: asyncpg.Pool, keys: Sequence[str]) -> dict[str, Any]:
        """The current views of `keys`, in one statement (for queries)."""
        _, _, views = await self.changes(pool, [], [0] * len(self.follows), keys)
        return views

    def since(self, read: Sequence[int]) -> list[int]:
        """What each `follows` has been read up to, from the read models' positions."""
        at = dict(zip(self.models, read, strict=True))
        return [at[f.model or self.model] for f in self.follows]


class Offers(Protocol):
    def offer(self, key: Any, item: Any) -> None: ...


class JoinedSubscribers:
    """A joined topic's subscribers in this process. A new subscriber's first view is read
    whole by the next refresh (and given to it alone); from then on its key is read again
    when a followed row of it changed. Every key read so far has been read up to `since`."""

    def __init__(self, spec: JoinedTopic, pool: asyncpg.Pool) -> None:
        self.spec = spec
        self._pool = pool
        self.subscribers: dict[str, set[Offers]] = {}
        self.waiting: dict[str, set[Offers]] = {}
        self.since = [0] * len(spec.follows)
        self._refreshing: asyncio.Task[None] | None = None
        self._again = False

    def request_refresh(self) -> None:
        if self._refreshing is not None:
            self._again = True
            return
        self._refreshing = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            while True:
                self._again = False
                await self._read()
                if not self._again:
                    return
        finally:
            self._refreshing = None

    async def _read(self) -> None:
        fresh = {key: set(slots) for key, slots in self.waiting.items()}
        watched = list(self.subscribers)
        if not fresh and not watched:
            return
        try:
            found = await self.spec.changes(self._pool, watched, self.since, list(fresh))
        except Exception as exc:  # the periodic refresh heals a failed one
            log.warning("live view refresh failed (%s): %s", self.spec.name, exc)
            return
        read, dirty, views = found
        for key, view in views.items():
            slot_key = self.spec.slot_key(key, view)
            for slot in self.subscribers.get(key, ()) if key in dirty else ():
                slot.offer(slot_key, view)
            for slot in fresh.get(key, ()):
                slot.offer(slot_key, view)
        for key, slots in fresh.items():
            for slot in slots & self.waiting.get(key, set()):
                self.waiting[key].discard(slot)
                self.subscribers.setdefault(key, set()).add(slot)
            if not self.waiting.get(key, True):
                del self.waiting[key]
        self.since = self.spec.since(read)

    @contextlib.contextmanager
    def subscribed(self, key: str, slot: Offers) -> Iterator[None]:
        self.waiting.setdefault(key, set()).add(slot)
        try:
            yield
        finally:
            for table in (self.waiting, self.subscribers):
                slots = table.get(key)
                if slots is not None:
                    slots.discard(slot)
                    if not slots:
                        del table[key]
