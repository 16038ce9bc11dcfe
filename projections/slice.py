"""What a read model is, as the rest of the service sees it: its projection (name, tables,
evolve), and the live topics its views can be watched by. Each read model is one module that
builds one `ReadModel`; `projections/__init__.py` lists them, and nothing else names them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from projections.base import Projection


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


Loader = Callable[[Sequence[Hashable]], Awaitable[list[tuple[Hashable, Any]]]]
"""Reads the current views of some watched keys: (key, view) pairs."""


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
    topics: tuple[LiveTopic, ...] = ()

    @property
    def name(self) -> str:
        return self.projection.name


def by_key(
    model: str, view: str, key: str, of: Callable[[asyncpg.Record], Any]
) -> Callable[[asyncpg.Pool], Loader]:
    """The usual live loader: the rows of `readmodel.<view>` whose `key` is watched, one query
    for all of them, each as its typed view (`of`) stamped with read model `model`'s position."""

    def make(pool: asyncpg.Pool) -> Loader:
        async def load(keys: Sequence[Hashable]) -> list[tuple[Hashable, Any]]:
            rows = await pool.fetch(
                f"SELECT *, {read_position(model)} FROM readmodel.{view}"
                f" WHERE {key} = any($1::text[])",
                list(keys),
            )
            return [(row[key], of(row)) for row in rows]

        return load

    return make
