"""The SQL of a read model's tables, written once for every projection: create a table, add a
column to a live one, load the rows of some keys, upsert changed rows, delete removed ones.

Each statement moves a whole batch in one round trip, as one array per column through
`unnest`, so its cost hardly depends on how many rows a batch changed. jsonb columns travel as
text and are cast in SQL (`$1::text[]::jsonb[]`): handed a list of lists for a `jsonb[]`,
asyncpg would encode a two-dimensional array of jsonb, not one array of JSON lists."""

from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson


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


_CONSTRAINT = re.compile(r"\s+(?:NOT\s+NULL|NULL|DEFAULT|CHECK|PRIMARY|UNIQUE|REFERENCES)\b", re.I)


def base_type(definition: str) -> str:
    """`integer NOT NULL DEFAULT 0` -> `integer`: the type an array of the column is cast to."""
    return _CONSTRAINT.split(definition, maxsplit=1)[0].strip()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal | datetime | date):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    raise TypeError(f"not JSON: {value!r}")


def to_json(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


def to_json_all(values: Sequence[Any]) -> list[str]:
    dumps = orjson.dumps
    return [dumps(value, default=_default).decode() for value in values]


def literal(value: Any) -> str:
    """A constant as SQL, for the rows a table starts with (DDL takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    text = value if isinstance(value, str) else to_json(value)
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Shape:
    """One table: its name, its columns in row order (name, SQL definition), and its key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    names: tuple[str, ...] = field(init=False)
    types: tuple[str, ...] = field(init=False)
    _sql: dict[str, str] = field(init=False, default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(name for name, _ in self.columns))
        object.__setattr__(self, "types", tuple(base_type(d) for _, d in self.columns))
        missing = [k for k in self.key if k not in self.names]
        if missing:
            raise ValueError(f"table {self.name}: key columns {missing} are not columns")

    def create(self, schema: str) -> str:
        cols = ",\n  ".join(f"{name} {definition}" for name, definition in self.columns)
        key = ", ".join(self.key)
        return f"CREATE TABLE {schema}.{self.name} (\n  {cols},\n  PRIMARY KEY ({key})\n);"

    def insert_literals(self, schema: str, rows: Sequence[Sequence[Any]]) -> str:
        if not rows:
            return ""
        values = ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
        return f"INSERT INTO {schema}.{self.name} ({', '.join(self.names)}) VALUES {values};"

    def _key_types(self) -> list[str]:
        types = dict(zip(self.names, self.types, strict=True))
        return [types[k] for k in self.key]

    def _keys_match(self, first: int) -> str:
        """`key = any($n)`, or for a key of several columns, a match against their arrays."""
        types = self._key_types()
        if len(self.key) == 1:
            return f"{self.key[0]} = any(${first}::{types[0]}[])"
        arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(types))
        return f"({', '.join(self.key)}) IN (SELECT * FROM unnest({arrays}))"

    def _key_arrays(self, keys: Collection[Any]) -> list[list[Any]]:
        if len(self.key) == 1:
            return [list(keys)]
        columns = list(zip(*keys, strict=True)) if keys else [()] * len(self.key)
        return [list(column) for column in columns]

    def _statement(self, kind: str, schema: str) -> str:
        cached = self._sql.get(f"{kind} {schema}")
        if cached is not None:
            return cached
        table = f"{schema}.{self.name}"
        if kind == "load":
            sql = f"SELECT {', '.join(self.names)} FROM {table} WHERE {self._keys_match(1)}"
        elif kind == "delete":
            sql = f"DELETE FROM {table} WHERE {self._keys_match(1)}"
        else:
            arrays = ", ".join(
                f"${i}::text[]::jsonb[]" if t == "jsonb" else f"${i}::{t}[]"
                for i, t in enumerate(self.types, 1)
            )
            updates = ", ".join(f"{n} = excluded.{n}" for n in self.names if n not in self.key)
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            sql = f"INSERT INTO {table} ({', '.join(self.names)}) SELECT * FROM unnest({arrays})"
            if kind == "upsert":
                sql += f" ON CONFLICT ({', '.join(self.key)}) {action}"
        self._sql[f"{kind} {schema}"] = sql
        return sql

    async def load(
        self, conn: asyncpg.Connection, schema: str, keys: Collection[Hashable]
    ) -> list[asyncpg.Record]:
        """The rows of `keys` that exist, in one query (columns in row order)."""
        if not keys:
            return []
        rows: list[asyncpg.Record] = await conn.fetch(
            self._statement("load", schema), *self._key_arrays(keys)
        )
        return rows

    async def upsert(
        self,
        conn: asyncpg.Connection,
        schema: str,
        rows: Sequence[Sequence[Any]],
        insert_only: bool = False,
    ) -> None:
        """Insert or replace `rows` (each a sequence of values in column order), in one
        statement; `insert_only`: insert them (a key already there fails)."""
        if not rows:
            return
        columns: list[Any] = list(zip(*rows, strict=True))
        for i, t in enumerate(self.types):
            if t == "jsonb":
                columns[i] = to_json_all(columns[i])
        await conn.execute(self._statement("insert" if insert_only else "upsert", schema), *columns)

    async def delete(
        self, conn: asyncpg.Connection, schema: str, keys: Collection[Hashable]
    ) -> None:
        if keys:
            await conn.execute(self._statement("delete", schema), *self._key_arrays(keys))
