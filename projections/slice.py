"""What a read model is, as the rest of the service sees it: its projection (name, tables,
evolve), and the live topics its views can be watched by. Each read model is one module that
builds one `ReadModel`; `projections/__init__.py` lists them, and nothing else names them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from projections.base import Projection

if TYPE_CHECKING:
    from projections.joined import JoinedTopic


class View(Protocol):
    """A typed view of a read model: whatever it holds, it knows the position it reflects
    (its read model's position when it was read) and the position of its own last change."""

    @property
    def position(self) -> int: ...

    @property
    def changed(self) -> int: ...


def read_position(name: str) -> str:
    """A select-list item: read model `name`'s position, as `read_position`. Read in the same
    statement as the rows, it comes from the same snapshot, and the projector moves rows and
    position in one transaction: the rows reflect exactly the events up to it."""
    if not name.isidentifier():
        raise ValueError(f"not a read model name: {name!r}")
    return f"(SELECT position FROM eventgraph.projections WHERE name = '{name}') AS read_position"


@dataclass(frozen=True, slots=True)
class Changes:
    """What one read of a live topic found: the views of watched keys that changed, oldest
    change first, and the position up to which every change was read (the read model's
    position, or the last change read when a page limit cut the read short)."""

    position: int
    views: list[tuple[Hashable, Any]]
    complete: bool = True


Loader = Callable[[Sequence[Hashable], int, Sequence[tuple[Hashable, int]]], Awaitable[Changes]]
"""`load(watched, since, fresh)`: the views of the `watched` keys that changed after `since`,
and of each `fresh` key (just watched) that changed after its own start."""


@dataclass(frozen=True, eq=False)
class LiveTopic:
    """A way to watch views of one read model: by which key, and how to read them. A topic's
    loader is made once per process, from the read side's pool."""

    name: str
    loader: Callable[[asyncpg.Pool], Loader]
    slot_key: Callable[[Hashable, Any], Hashable] = field(default=lambda key, _view: key)
    """Which slot of a subscriber a view goes to (a customer's feed: one per order)."""


@dataclass(frozen=True)
class ReadModel:
    projection: Projection
    topics: tuple[LiveTopic | JoinedTopic, ...] = ()

    @property
    def name(self) -> str:
        return self.projection.name


EVERY = "*"
"""The key of a topic that watches every row (its `key` column is None)."""


def changed_rows(
    model: str,
    view: str,
    key: str | None,
    of: Callable[[asyncpg.Record, int], Any],
    page: int = 1_000,
) -> Callable[[asyncpg.Pool], Loader]:
    """The usual live loader: the rows of `readmodel.<view>` changed after a position, of the
    watched values of column `key` (or of every row, `key` None), in one query, each as its
    typed view (`of(row, position)`).

    Cost follows change, not what is watched: the read goes by the index on `position` and
    returns only changed rows. Several views of one key (a customer's orders) are stamped so
    that their positions strictly increase: the last with the position read up to, each
    earlier one with one before the next change of the same key. Each row's last change is
    one event's position, so no two rows share one."""
    fresh_match = f"v.{key} = f.k" if key else "true"
    watched_match = f" AND {key} = any($1::text[])" if key else " AND cardinality($1::text[]) > 0"
    sql = f"""
        SELECT {read_position(model)}, r.* FROM (VALUES (1)) AS one (x) LEFT JOIN (
            (SELECT * FROM readmodel.{view} WHERE position > $2{watched_match}
             UNION ALL
             SELECT v.* FROM readmodel.{view} v
               JOIN unnest($3::text[], $4::bigint[]) AS f(k, s)
                 ON {fresh_match} AND v.position > f.s)
            ORDER BY position LIMIT {page}
        ) r ON true ORDER BY r.position"""

    # One key read from its own start (a feed catching up): a plain range on the index, so
    # the read stops after a page; the union above has to read every row after the start.
    one_match = f" AND {key} = $2" if key else " AND $2::text IS NOT NULL"
    one_sql = f"""
        SELECT {read_position(model)}, r.* FROM (VALUES (1)) AS one (x) LEFT JOIN (
            SELECT * FROM readmodel.{view} WHERE position > $1{one_match}
            ORDER BY position LIMIT {page}
        ) r ON true ORDER BY r.position"""

    def make(pool: asyncpg.Pool) -> Loader:
        async def load(
            watched: Sequence[Hashable], since: int, fresh: Sequence[tuple[Hashable, int]]
        ) -> Changes:
            if not watched and len(fresh) == 1:
                ((only, start),) = fresh
                rows = await pool.fetch(one_sql, start, only)
            else:
                rows = await pool.fetch(
                    sql, list(watched), since, [k for k, _ in fresh], [s for _, s in fresh]
                )
            if rows[0]["read_position"] is None:  # no checkpoint: nothing was read
                raise LookupError(f"read model {model} is not set up")
            read_at = int(rows[0]["read_position"])
            rows = [r for r in rows if r["position"] is not None]
            complete = len(rows) < page
            end = read_at if complete else rows[-1]["position"]
            next_change: dict[Hashable, int] = {}
            views: list[tuple[Hashable, Any]] = []
            for row in reversed(rows):
                of_key = row[key] if key else EVERY
                stamp = next_change.get(of_key, end + 1) - 1
                next_change[of_key] = row["position"]
                views.append((of_key, of(row, stamp)))
            views.reverse()
            return Changes(end, views, complete)

        return load

    return make
