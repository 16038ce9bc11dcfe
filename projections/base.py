"""What every projection is: a name, a version of its table shapes, its tables, and a way to
apply a batch of events to them inside the projector's transaction.

Many read models are one row per aggregate, folded from its events: `RowProjection`, the
single-table case of the kit (projections/kit.py, for many rows in several tables). Both load
the rows a batch touches in one query, fold every event into them in memory, and write each
changed row once (projections/tables.py), so that catching up costs a few round trips per
thousand events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import asyncpg

from domain.aggregate import DomainEvent
from domain.codec import decode
from eventstore.events import RecordedEvent
from projections.tables import Shape, add_column

Row = dict[str, Any]
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Page(Generic[V]):
    """One page of a read model's views, and whether more follow."""

    items: list[V]
    has_next: bool
    position: int = 0
    """The read model's position when the page was read (also for an empty page)."""


class Projection(Protocol):
    name: ClassVar[str]
    version: ClassVar[int]
    """Bump when the tables change shape: a new version is rebuilt into new tables."""
    views: ClassVar[tuple[str, ...]]
    """The tables readers see, as views of the same name in schema `readmodel`."""

    def create_tables(self, schema: str) -> str:
        """DDL creating this projection's tables in `schema`."""
        ...

    def create_indexes(self, schema: str) -> str:
        """DDL creating this projection's indexes in `schema`, idempotent (IF NOT EXISTS): run
        on every start against the live generation too, so a new index needs no rebuild."""
        ...

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[RecordedEvent]
    ) -> None:
        """Apply `events` (in position order) to the tables in `schema`, inside the caller's
        transaction. Events already reflected in a row (position at or below the row's) must
        change nothing."""
        ...


class RowProjection:
    """Rows keyed by one text column, each folded from the events about it: one row per key,
    never deleted, so each row's `position` is the mark of what it has applied (an event at
    or below it is passed over), the kit's rule at the grain of a row."""

    name: ClassVar[str]
    version: ClassVar[int]
    views: ClassVar[tuple[str, ...]]
    table: ClassVar[str]
    key: ClassVar[str]
    columns: ClassVar[tuple[tuple[str, str], ...]]
    """(name, SQL type) of every column, the key first; every row has `position`."""
    added_columns: ClassVar[tuple[str, ...]] = ()
    """Columns added after the table first shipped, nullable, whose null is right for every
    row the older code wrote (no event that sets them existed then): added to the live
    generation at start, without a rebuild."""

    def key_of(self, event: DomainEvent) -> str | None:
        raise NotImplementedError

    def evolve(self, row: Row | None, event: DomainEvent, recorded: RecordedEvent) -> Row | None:
        raise NotImplementedError

    @cached_property
    def shape(self) -> Shape:
        return Shape(self.table, self.columns, (self.key,))

    def create_tables(self, schema: str) -> str:
        return self.shape.create(schema)

    def create_indexes(self, schema: str) -> str:
        types = dict(self.columns)
        added = "".join(
            add_column(schema, self.table, name, types[name].split()[0])
            for name in self.added_columns
        )
        # Live views read the rows changed since a position (projections/slice.py).
        return added + (
            f"CREATE INDEX IF NOT EXISTS {self.table}_position_idx"
            f" ON {schema}.{self.table} (position);"
        )

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[RecordedEvent]
    ) -> None:
        relevant: list[tuple[str, DomainEvent, RecordedEvent]] = []
        for recorded in events:
            domain_event = decode(recorded.type, recorded.data, recorded.occurred_at)
            key = self.key_of(domain_event)
            if key is not None:
                relevant.append((key, domain_event, recorded))
        if not relevant:
            return
        shape = self.shape
        keys = list({key for key, _, _ in relevant})
        rows: dict[str, Row | None] = {
            r[self.key]: dict(r) for r in await shape.load(conn, schema, keys)
        }
        changed: set[str] = set()
        for key, domain_event, recorded in relevant:
            row = rows.get(key)
            if row is not None and row["position"] >= recorded.position:
                continue  # already applied
            rows[key] = self.evolve(row, domain_event, recorded)
            changed.add(key)
        written = [row for k in changed if (row := rows[k]) is not None]
        await shape.upsert(conn, schema, [[row[n] for n in shape.names] for row in written])
