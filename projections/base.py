"""What every projection is: a name, a version of its table shapes, its tables, and a way to
apply a batch of events to them inside the projector's transaction.

Most read models are rows keyed by an aggregate id, folded from events: `RowProjection` loads
the rows a batch touches in one query, folds every event into them in memory, and writes each
changed row once, so that catching up costs a few round trips per thousand events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import asyncpg
import orjson

from domain.aggregate import DomainEvent
from domain.codec import decode
from eventstore.events import RecordedEvent

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


def add_column(schema: str, table: str, column: str, definition: str) -> str:
    """DDL adding a column to a live table only if it is missing: `ADD COLUMN IF NOT EXISTS`
    would lock the table against readers on every start even when the column is there."""
    return f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{schema}.{table}'::regclass
                  AND attname = '{column}' AND NOT attisdropped) THEN
    SET LOCAL lock_timeout = '10s';
    ALTER TABLE {schema}.{table} ADD COLUMN {column} {definition};
  END IF;
END $$;
"""


class RowProjection:
    """Rows keyed by one text column, each folded from the events about it."""

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

    def create_tables(self, schema: str) -> str:
        cols = ",\n  ".join(f"{name} {sql_type}" for name, sql_type in self.columns)
        return f"CREATE TABLE {schema}.{self.table} (\n  {cols},\n  PRIMARY KEY ({self.key})\n);"

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
        names = [name for name, _ in self.columns]
        keys = list({key for key, _, _ in relevant})
        rows: dict[str, Row | None] = {
            r[self.key]: dict(r)
            for r in await conn.fetch(
                f"SELECT {', '.join(names)} FROM {schema}.{self.table}"
                f" WHERE {self.key} = any($1::text[])",
                keys,
            )
        }
        changed: set[str] = set()
        for key, domain_event, recorded in relevant:
            row = rows.get(key)
            if row is not None and row["position"] >= recorded.position:
                continue  # already applied
            rows[key] = self.evolve(row, domain_event, recorded)
            changed.add(key)
        await self._write(conn, schema, [row for k in changed if (row := rows[k]) is not None])

    async def _write(self, conn: asyncpg.Connection, schema: str, rows: list[Row]) -> None:
        if not rows:
            return
        names = [name for name, _ in self.columns]
        types = [sql_type.split()[0] for _, sql_type in self.columns]
        # jsonb values go as text: asyncpg would read a list inside a list as a 2-D array.
        arrays = ", ".join(
            f"${i}::text[]::jsonb[]" if t == "jsonb" else f"${i}::{t}[]"
            for i, t in enumerate(types, 1)
        )
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != self.key)
        await conn.execute(
            f"INSERT INTO {schema}.{self.table} ({', '.join(names)})"
            f" SELECT * FROM unnest({arrays})"
            f" ON CONFLICT ({self.key}) DO UPDATE SET {updates}",
            *[
                [orjson.dumps(row[n]).decode() for row in rows]
                if t == "jsonb"
                else [row[n] for row in rows]
                for n, t in zip(names, types, strict=True)
            ],
        )
