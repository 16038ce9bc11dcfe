"""The executor's shortcut for objects of plain scalar attributes answers exactly what
graphql-core's general path answers: data, nulls, errors and their paths."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import strawberry
from graphql import ExecutionResult, execute, parse

from schema.executor import LeafObjects
from schema.results import payload


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    sku: str
    price: Decimal
    stock: int
    colour: Colour
    at: datetime
    note: str | None = None

    @strawberry.field
    def doubled(self) -> int:
        return self.stock * 2


@strawberry.type
class Broken:
    name: str  # holds None: a non-null field that resolves to null
    count: int  # holds a string that does not coerce
    maybe: int | None  # holds a string that does not coerce, but may be null


@strawberry.type
class Box:
    item: Item
    items: list[Item]


def _item(i: int, note: str | None = None) -> Item:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Item(sku=f"S-{i}", price=Decimal("1.50"), stock=i, colour=Colour.BLUE, at=at, note=note)


@strawberry.type
class Query:
    @strawberry.field
    async def item(self, i: int) -> Item | None:
        return None if i < 0 else _item(i, "n" if i % 2 else None)

    @strawberry.field
    def box(self) -> Box:
        return Box(item=_item(1), items=[_item(2), _item(3, "x")])

    @strawberry.field
    def broken(self, which: int) -> Broken | None:
        values: list[Any] = [["ok", 1, None], [None, 1, 1], ["ok", "x", 1], ["ok", 1, "x"]][which]
        return Broken(name=values[0], count=values[1], maybe=values[2])

    @strawberry.field
    def strict(self) -> Broken:
        return Broken(name=None, count=1, maybe=None)  # type: ignore[arg-type]


SCHEMA = strawberry.Schema(Query)._schema

DOCUMENTS = [
    ("{ item(i: 1) { sku price stock colour at note } }", None),
    ("{ item(i: 2) { __typename sku n: note p: price } }", None),
    ("{ item(i: -1) { sku } }", None),
    ("query($i: Int!) { item(i: $i) { sku doubled stock } }", {"i": 4}),
    ("{ item(i: 3) { sku sku price } }", None),
    ("{ box { item { sku colour } items { sku note at } } }", None),
    ("{ a: broken(which: 0) { name count maybe } }", None),
    ("{ broken(which: 1) { name count } }", None),
    ("{ broken(which: 2) { name count } }", None),
    ("{ broken(which: 3) { name maybe } }", None),
    ("{ strict { name } item(i: 1) { sku } }", None),
    ("query($i: Int!) { item(i: $i) { sku } }", {"i": "nope"}),
]


async def _run(document: str, variables: dict[str, Any] | None, fast: bool) -> dict[str, Any]:
    result = execute(
        SCHEMA,
        parse(document),
        variable_values=variables,
        executor_class=LeafObjects if fast else None,
    )
    if not isinstance(result, ExecutionResult):
        result = await result
    return payload(result)


@pytest.mark.parametrize(("document", "variables"), DOCUMENTS)
async def test_the_shortcut_answers_what_the_general_path_answers(
    document: str, variables: dict[str, Any] | None
) -> None:
    general = await _run(document, variables, fast=False)
    assert "Item.__init__" not in str(general)
    assert await _run(document, variables, fast=True) == general


async def test_the_shortcut_serves_plain_objects() -> None:
    calls = 0
    original = LeafObjects.execute_fields

    def counting(self: LeafObjects, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(self, *args)

    LeafObjects.execute_fields = counting  # type: ignore[method-assign]
    try:
        data = await _run("{ item(i: 1) { sku price stock colour at } }", None, fast=True)
    finally:
        LeafObjects.execute_fields = original  # type: ignore[method-assign]
    assert data["data"]["item"] == {
        "sku": "S-1",
        "price": "1.50",
        "stock": 1,
        "colour": "BLUE",
        "at": "2026-01-01T00:00:00+00:00",
    }
    assert calls == 2  # the root, then the item, which did not go field by field
