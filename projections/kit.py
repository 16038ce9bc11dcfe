"""The projection kit: read models of many rows in several tables, folded from events in
memory a batch at a time, as fast as hand-written SQL.

A projection (`TableProjection`) declares its tables and the events it follows, and writes
two pure functions:

- `reads(event, rows)`: the rows `evolve` will read for the event, as `(table, key)` pairs.
  For a whole batch the kit loads every row named, in one query per table. `rows.get` works
  here on what is loaded, so a lookup may name the rows it leads to (the lines of a cancelled
  order name their products): those load in a second round.
- `evolve(rows, event, position)`: the rows the event changes, each a new row (a NamedTuple of
  one of the tables), or `Delete(table, key)` for a row it removes. `rows.get(table, key)`
  sees the rows as the batch's earlier events left them (None: no such row).

A row `evolve` asks for that `reads` did not name is loaded when asked, one round trip each:
`reads` makes a batch fast, it cannot make it wrong. The kit writes back only the rows that
differ from what was loaded: one upsert and one delete per table, whatever the batch size.

**Applying an event twice changes nothing, by construction**: each generation of the tables
keeps the position it has applied up to (table `applied`, one row), moved in the same
transaction as the rows, and the kit passes over every event at or below it. The rule needs
nothing from `evolve`, and holds for deletes and lookups too (per-row positions cannot: a
deleted row keeps none). A table's `position` column, if it has one, is each row's last
change, which live views follow; the kit checks that every row a batch changes carries a
position of that batch.

A table is a view readers see (`readmodel.<name>`), or, with `view=False`, a lookup only its
projection reads: the lines of each order that `sales` keeps to un-count a cancelled one, the
pattern for a read model that follows another aggregate's events."""

from __future__ import annotations

import types
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import (
    Any,
    ClassVar,
    Generic,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

import asyncpg

from domain.aggregate import DomainEvent
from domain.codec import decode
from eventstore.events import RecordedEvent
from projections.tables import Shape, add_column

R = TypeVar("R", bound=tuple[Any, ...])

_SQL_TYPES: dict[Any, str] = {
    int: "integer",
    str: "text",
    Decimal: "numeric",
    datetime: "timestamptz",
    date: "date",
    bool: "boolean",
    float: "double precision",
}


def column_type(name: str, hint: Any) -> str:
    """A column's SQL definition from its field's type: `position` is bigint; `X | None` is
    nullable; int, str, Decimal, datetime, date, bool, float map to their SQL types; anything
    else (lists, dicts, tuples) is jsonb."""
    if name == "position":
        return "bigint NOT NULL"
    nullable = False
    if get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint):
        nullable = True
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
    sql = _SQL_TYPES.get(hint, "jsonb")
    return sql if nullable else f"{sql} NOT NULL"


@dataclass(frozen=True, eq=False)
class Table(Generic[R]):
    """One table of a projection: its rows are `row`, a NamedTuple whose fields are the
    columns (their SQL types follow the fields' types, `column_type`; `sql` overrides one),
    keyed by one column or several (a key of several columns is a tuple)."""

    name: str
    row: type[R]
    key: str | tuple[str, ...]
    sql: Mapping[str, str] = field(default_factory=dict)
    view: bool = True
    """Readers see it as `readmodel.<name>`; False: a lookup only this projection reads."""
    indexes: tuple[str, ...] = ()
    """Column lists to index, as `"units_sold DESC, sku"`: created on every start if missing,
    so a new one needs no rebuild."""
    initial: tuple[R, ...] = ()
    """Rows the table starts with (a single row of totals)."""
    added: tuple[str, ...] = ()
    """Columns added after the table shipped, added to the live generation at start: their
    definition must suit every row already there (nullable, or with a DEFAULT)."""
    insert_only: bool = False
    """Each row is written once, by the event that makes it, and never replaced (it may be
    deleted): a plain INSERT, cheaper than an upsert, and a second write of a key fails."""
    shape: Shape = field(init=False)
    key_of: Any = field(init=False)
    """`key_of(row)`: the row's key."""
    position_index: int | None = field(init=False)

    def __post_init__(self) -> None:
        fields: tuple[str, ...] = getattr(self.row, "_fields", ())
        if not fields:
            raise TypeError(f"table {self.name}: rows must be a NamedTuple")
        hints = get_type_hints(self.row)
        columns = tuple((f, self.sql.get(f) or column_type(f, hints[f])) for f in fields)
        key = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        object.__setattr__(self, "shape", Shape(self.name, columns, key))
        object.__setattr__(self, "key_of", itemgetter(*(fields.index(k) for k in key)))
        at = fields.index("position") if "position" in fields else None
        object.__setattr__(self, "position_index", at)

    def __repr__(self) -> str:
        return f"Table({self.name!r})"

    def create_tables(self, schema: str) -> str:
        return self.shape.create(schema) + self.shape.insert_literals(schema, self.initial)

    def create_indexes(self, schema: str) -> str:
        types = dict(self.shape.columns)
        ddl = [add_column(schema, self.name, column, types[column]) for column in self.added]
        for columns in self.indexes:
            # Named as PostgreSQL names an unnamed index, so one made by hand is recognised.
            words = [w for w in columns.replace(",", " ").split() if w.upper() not in _ORDER]
            name = f"{self.name}_{'_'.join(words)}_idx"
            ddl.append(f"CREATE INDEX IF NOT EXISTS {name} ON {schema}.{self.name} ({columns});")
        return "\n".join(ddl)


_ORDER = {"ASC", "DESC", "NULLS", "FIRST", "LAST"}


@dataclass(frozen=True, slots=True)
class Delete:
    """What `evolve` returns for a row it removes."""

    table: Table[Any]
    key: Hashable


Change = tuple[Any, ...] | Delete
"""A new row (of one of the projection's tables, found by its type), or a `Delete`."""


class NotLoaded(Exception):
    """`rows.get` of a row neither loaded nor written in this batch (the kit loads it)."""

    def __init__(self, table: Table[Any], key: Hashable) -> None:
        super().__init__(table, key)  # raised for every lookup of a batch: no message made
        self.table = table
        self.key = key

    def __str__(self) -> str:
        return f"{self.table.name}[{self.key!r}] is not loaded"


_UNKNOWN: Any = object()


class Rows:
    """The rows a batch has loaded or written, by table and key: what `reads` and `evolve`
    see. `absent` says what a row never loaded is: unknown (the kit loads it), or absent
    (`fold`, in memory)."""

    __slots__ = ("_absent", "_tables")

    def __init__(self, tables: Iterable[Table[Any]], absent: bool = False) -> None:
        self._tables: dict[Table[Any], dict[Hashable, Any]] = {t: {} for t in tables}
        self._absent = absent

    def get(self, table: Table[R], key: Hashable) -> R | None:
        found = self._tables[table]
        try:
            row: R | None = found[key]
        except KeyError:
            if self._absent:
                return None
            raise NotLoaded(table, key) from None
        return row

    def of(self, table: Table[R]) -> dict[Hashable, R | None]:
        """Every row of `table` this batch knows, by key (None: absent or deleted)."""
        return self._tables[table]


class TableProjection:
    """A projection of several tables, many rows each (see the module's docstring)."""

    name: ClassVar[str]
    version: ClassVar[int]
    tables: ClassVar[tuple[Table[Any], ...]]
    events: ClassVar[tuple[type, ...]]
    """The event types it follows; the others are not even decoded."""
    views: ClassVar[tuple[str, ...]] = ()
    """Its tables that are views (set from `tables`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "tables" in cls.__dict__:
            cls.views = tuple(t.name for t in cls.tables if t.view)

    def __init__(self) -> None:
        self._types = frozenset(e.__name__ for e in self.events)
        self._by_row: dict[type, Table[Any]] = {t.row: t for t in self.tables}
        if len(self._by_row) != len(self.tables):
            raise TypeError(f"{self.name}: each table needs a row type of its own")

    def reads(self, event: Any, rows: Rows) -> Iterable[tuple[Table[Any], Hashable]]:
        """The rows `evolve` will read for `event` (see the module's docstring)."""
        return ()

    def evolve(self, rows: Rows, event: Any, position: int) -> Sequence[Change]:
        raise NotImplementedError

    def create_tables(self, schema: str) -> str:
        applied = f"CREATE TABLE {schema}.applied (position bigint NOT NULL);"
        start = f"INSERT INTO {schema}.applied VALUES (0);"
        return "\n".join([*(t.create_tables(schema) for t in self.tables), applied, start])

    def create_indexes(self, schema: str) -> str:
        # A generation made before this projection used the kit has no `applied`: it starts
        # from the checkpoint, which moved with that generation's rows (run on the live one).
        applied = f"""
CREATE TABLE IF NOT EXISTS {schema}.applied (position bigint NOT NULL);
INSERT INTO {schema}.applied
SELECT coalesce((SELECT position FROM eventgraph.projections WHERE name = '{self.name}'), 0)
 WHERE NOT EXISTS (SELECT FROM {schema}.applied);
"""
        return applied + "\n".join(t.create_indexes(schema) for t in self.tables)

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[RecordedEvent]
    ) -> None:
        relevant = [e for e in events if e.type in self._types]
        if not relevant:
            return
        applied: int = await conn.fetchval(f"SELECT position FROM {schema}.applied")
        batch = [
            (decode(e.type, e.data, e.occurred_at), e.position)
            for e in relevant
            if e.position > applied
        ]
        if not batch:
            return
        rows = Rows(self.tables)
        loaded: dict[Table[Any], dict[Hashable, Any]] = {t: {} for t in self.tables}

        async def load(wanted: Mapping[Table[Any], set[Hashable]]) -> None:
            for table, keys in wanted.items():
                if not keys:
                    continue
                known = rows.of(table)
                before = loaded[table]
                for key in keys:
                    known.setdefault(key, None)
                    before.setdefault(key, None)
                make = table.row._make
                for record in await table.shape.load(conn, schema, keys):
                    row = make(record)
                    key = table.key_of(row)
                    known[key] = before[key] = row

        pending, reads, known = batch, self.reads, rows._tables
        while pending:
            named: set[tuple[Table[Any], Hashable]] = set()  # most events name the same rows
            again = []
            for event, position in pending:
                try:
                    named.update(reads(event, rows))
                except NotLoaded as unknown:
                    named.add((unknown.table, unknown.key))
                    again.append((event, position))
            wanted: dict[Table[Any], set[Hashable]] = {t: set() for t in self.tables}
            for table, key in named:
                if key not in known[table]:
                    wanted[table].add(key)
            await load(wanted)
            pending = again

        start, miss = self._fold(rows, batch, 0)
        while miss is not None:
            await load({miss.table: {miss.key}})
            start, miss = self._fold(rows, batch, start)
        await self._write(conn, schema, rows, loaded, applied)
        await conn.execute(f"UPDATE {schema}.applied SET position = $1", batch[-1][1])

    def _fold(
        self, rows: Rows, batch: Sequence[tuple[Any, int]], start: int
    ) -> tuple[int, NotLoaded | None]:
        """Fold `batch[start:]` into `rows`; stops at an event whose `evolve` asked for a row
        not loaded, and says which (its index, and the row asked for)."""
        evolve, tables = self.evolve, rows._tables
        into = {row: (tables[t], t.key_of) for row, t in self._by_row.items()}.get
        for i in range(start, len(batch)):
            event, position = batch[i]
            try:
                changes = evolve(rows, event, position)
                if type(changes) is not list and type(changes) is not tuple:
                    changes = list(changes)  # a generator: all of it, before any change
            except NotLoaded as miss:
                return i, miss
            for change in changes:
                found = into(type(change))
                if found is not None:
                    table, key_of = found
                    table[key_of(change)] = change
                else:  # a Delete
                    delete = cast(Delete, change)
                    tables[delete.table][delete.key] = None
        return len(batch), None

    async def _write(
        self,
        conn: asyncpg.Connection,
        schema: str,
        rows: Rows,
        loaded: Mapping[Table[Any], Mapping[Hashable, Any]],
        applied: int,
    ) -> None:
        for table in self.tables:
            before = loaded[table]
            changed: list[Any] = []
            removed: list[Hashable] = []
            for key, row in rows.of(table).items():
                was = before.get(key, _UNKNOWN)
                if row is None:
                    if was is not None:
                        removed.append(key)
                elif was is _UNKNOWN or row != was:
                    changed.append(row)
            at = table.position_index
            if at is not None:
                stale = [row for row in changed if row[at] <= applied]
                if stale:
                    raise ValueError(
                        f"{self.name}: a row of {table.name} changed without the position of"
                        f" the event that changed it: {stale[0]!r}"
                    )
            await table.shape.delete(conn, schema, removed)
            await table.shape.upsert(conn, schema, changed, table.insert_only)


def fold(
    projection: TableProjection,
    events: Iterable[tuple[DomainEvent, int]],
    given: Iterable[tuple[Any, ...]] = (),
) -> dict[str, dict[Hashable, Any]]:
    """The tables after `events` (event, position), in memory, from the tables' initial rows
    and the rows `given`: for unit tests of `reads` and `evolve`. Deleted rows are left out."""
    rows = Rows(projection.tables, absent=True)
    by_row = {t.row: t for t in projection.tables}
    for row in (*(r for t in projection.tables for r in t.initial), *given):
        table = by_row[type(row)]
        rows.of(table)[table.key_of(row)] = row
    batch = list(events)
    for event, _ in batch:
        list(projection.reads(event, rows))  # it must not fail on what is there
    projection._fold(rows, batch, 0)
    return {
        t.name: {k: r for k, r in rows.of(t).items() if r is not None} for t in projection.tables
    }
