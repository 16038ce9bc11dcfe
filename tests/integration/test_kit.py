"""The projection kit against real PostgreSQL: a batch loads only the rows it touches and
writes only the rows that changed (PostgreSQL's own row versions, `xmin`, say which were
written), applying a batch twice changes nothing, rows are deleted, and a projection of
several tables rebuilds to the rows it followed live. The read model is the test-only
`tests/kit/bought.py`."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

import asyncpg

from domain import order
from domain.aggregate import DomainEvent
from domain.codec import encode
from domain.ids import OrderId
from domain.order import OrderCancelled, OrderLine, OrderPlaced
from eventgraph.runtime import open_runtime
from eventstore.events import ANY, NewEvent, RecordedEvent
from eventstore.store import EventStore
from projections.generations import create_generation, ensure_projection
from projections.kit import Change, Rows, Table, TableProjection
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests.kit import bought

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def oid(n: int) -> OrderId:
    return OrderId(str(uuid.UUID(int=n)))


def placed(n: int, customer: str, *lines: tuple[str, int]) -> OrderPlaced:
    items = tuple(OrderLine(sku, q, Decimal("1.00")) for sku, q in lines)
    return OrderPlaced(oid(n), customer, items, Decimal(sum(q for _, q in lines)), NOW)


def cancelled(n: int) -> OrderCancelled:
    return OrderCancelled(oid(n), "test", "test", NOW)


async def append(store: EventStore, *events: DomainEvent) -> list[RecordedEvent]:
    """Append `events` one per transaction; the recorded events, in log order."""
    head = await store.head()
    for event in events:
        event_type, version, data = encode(event)
        stream = order.stream_id(getattr(event, "order_id"))  # noqa: B009
        await store.append({stream: (ANY, [NewEvent(event_type, data, version)])})
    return await store.read_all(head, 10_000)


async def apply(conn: asyncpg.Connection, projection: Any, schema: str, events: Any) -> None:
    async with conn.transaction():
        await projection.apply(conn, schema, events)


async def versions(conn: asyncpg.Connection, schema: str) -> dict[str, dict[Any, str]]:
    """Every row of the bought tables by key, with its row version (xmin: the transaction that
    wrote it)."""
    found: dict[str, dict[Any, str]] = {}
    for table in bought.BoughtProjection.tables:
        key = table.shape.key
        rows = await conn.fetch(
            f"SELECT xmin::text AS v, {', '.join(key)} FROM {schema}.{table.name}"
        )
        found[table.name] = {
            (r[key[0]] if len(key) == 1 else tuple(r[k] for k in key)): r["v"] for r in rows
        }
    return found


def loaded(statements: list[Any], schema: str) -> dict[str, set[Any]]:
    """The keys each load statement asked for, by table."""
    keys: dict[str, set[Any]] = {}
    for q in statements:
        if q.query.startswith("SELECT ") and f" FROM {schema}." in q.query:
            table = q.query.split(f" FROM {schema}.")[1].split()[0]
            asked = q.args[0] if len(q.args) == 1 else list(zip(*q.args, strict=True))
            keys.setdefault(table, set()).update(asked)
    return keys


async def test_a_batch_loads_the_rows_it_touches_writes_what_changed_and_deletes(
    pool: asyncpg.Pool, store: EventStore
) -> None:
    projection = bought.BoughtProjection()
    async with pool.acquire() as conn:
        schema = await create_generation(conn, projection, 1)
        first = await append(
            store,
            placed(1, "ann", ("A", 2)),
            placed(2, "bob", ("A", 1), ("B", 1)),
            placed(3, "cy", ("C", 5)),
        )
        await apply(conn, projection, schema, first)
        before = await versions(conn, schema)

        second = await append(store, placed(4, "ann", ("A", 1)), cancelled(2))
        statements: list[Any] = []
        conn.add_query_logger(statements.append)
        await apply(conn, projection, schema, second)
        await asyncio.sleep(0.05)  # loggers are called soon, not at once
        after = await versions(conn, schema)

    assert loaded(statements, schema) == {
        "kit_placed": {str(oid(2))},  # the lookup, first: the cancel does not name its buyer
        "kit_buyers": {"ann", "bob"},
        "kit_bought": {("ann", "A"), ("bob", "A"), ("bob", "B")},
        "applied": set(),
    }
    # cy's rows were not touched: the same row versions; ann's were written again
    assert after["kit_buyers"]["cy"] == before["kit_buyers"]["cy"]
    assert after["kit_bought"][("cy", "C")] == before["kit_bought"][("cy", "C")]
    assert after["kit_bought"][("ann", "A")] != before["kit_bought"][("ann", "A")]
    # bob's order is gone: its rows fell to 0 units, and its lookup row was deleted
    assert ("bob", "A") not in after["kit_bought"] and ("bob", "B") not in after["kit_bought"]
    assert set(after["kit_placed"]) == {str(oid(1)), str(oid(3)), str(oid(4))}
    rows = await pool.fetch(f"SELECT * FROM {schema}.kit_buyers ORDER BY customer_id")
    assert [(r["customer_id"], r["orders"]) for r in rows] == [("ann", 2), ("bob", 0), ("cy", 1)]


class Peak(NamedTuple):
    sku: str
    peak: int
    """The most units of it one order line ever asked for."""
    position: int


PEAKS = Table("kit_peaks", Peak, key="sku")


class PeaksProjection(TableProjection):
    name: ClassVar[str] = "kit_peaks"
    version: ClassVar[int] = 1
    tables: ClassVar[tuple[Table[Any], ...]] = (PEAKS,)
    events: ClassVar[tuple[type, ...]] = (OrderPlaced,)

    def reads(self, event: Any, rows: Rows) -> Any:
        return [(PEAKS, line.sku) for line in event.lines]

    def evolve(self, rows: Rows, event: Any, position: int) -> list[Change]:
        changes: list[Change] = []
        for line in event.lines:
            was = rows.get(PEAKS, line.sku)
            higher = was is None or line.quantity > was.peak
            changes.append(Peak(line.sku, line.quantity, position) if higher else was)
        return changes


async def test_a_row_evolve_gives_back_unchanged_is_not_written(
    pool: asyncpg.Pool, store: EventStore
) -> None:
    projection = PeaksProjection()
    async with pool.acquire() as conn:
        schema = await create_generation(conn, projection, 1)
        await apply(
            conn, projection, schema, await append(store, placed(1, "a", ("A", 5), ("B", 1)))
        )
        before = dict(await conn.fetch(f"SELECT sku, xmin::text FROM {schema}.kit_peaks"))
        await apply(
            conn, projection, schema, await append(store, placed(2, "a", ("A", 3), ("B", 2)))
        )
        after = dict(await conn.fetch(f"SELECT sku, xmin::text FROM {schema}.kit_peaks"))
        peaks = dict(await conn.fetch(f"SELECT sku, peak FROM {schema}.kit_peaks"))
    assert peaks == {"A": 5, "B": 2}
    assert after["A"] == before["A"] and after["B"] != before["B"]


async def test_applying_a_batch_twice_or_overlapping_changes_nothing_twice(
    pool: asyncpg.Pool, store: EventStore
) -> None:
    projection = bought.BoughtProjection()
    events = await append(
        store, placed(1, "ann", ("A", 2)), placed(2, "ann", ("A", 1)), cancelled(1)
    )
    async with pool.acquire() as conn:
        schema = await create_generation(conn, projection, 1)
        await apply(conn, projection, schema, events[:2])
        await apply(conn, projection, schema, events)  # the first two again, and the cancel
        once = await versions(conn, schema)
        rows = await conn.fetch(f"SELECT * FROM {schema}.kit_bought")
        await apply(conn, projection, schema, events)
        await apply(conn, projection, schema, events[1:])
        assert await versions(conn, schema) == once  # not even written again
        assert await conn.fetch(f"SELECT * FROM {schema}.kit_bought") == rows
    assert [(r["sku"], r["units"]) for r in rows] == [("A", 1)]


async def test_a_projection_of_several_tables_rebuilds_to_the_rows_it_followed_live(
    clean_db: str,
) -> None:
    rng = random.Random(7)
    events: list[DomainEvent] = []
    for n in range(1, 301):
        skus = rng.sample("ABCDEFG", rng.randint(1, 3))
        events.append(placed(n, f"c{rng.randint(1, 9)}", *((s, rng.randint(1, 3)) for s in skus)))
        if n > 5 and rng.random() < 0.4:
            events.append(cancelled(rng.randint(max(1, n - 40), n - 1)))
    events = list({(type(e), e.order_id): e for e in events}.values())  # each cancel once

    async def dump(conn: asyncpg.Connection) -> list[list[dict[str, Any]]]:
        return [
            [dict(r) for r in await conn.fetch(f"SELECT * FROM readmodel.{view} ORDER BY 1, 2")]
            for view in bought.BoughtProjection.views
        ]

    projection = bought.BoughtProjection()
    async with open_runtime(clean_db, run_projectors=False) as runtime:
        conn = await asyncpg.connect(runtime.read_dsn or clean_db)
        await ensure_projection(conn, projection)
        runner = ProjectionRunner(
            projection, runtime.read_dsn or clean_db, runtime.store, runtime.log_signal,
            lambda name, position: runtime.watch.advance(name, position), batch_size=7,
        )  # fmt: skip
        runner.start()
        try:
            await append(runtime.store, *events[: len(events) // 2])  # followed live ...
            await append(runtime.store, *events[len(events) // 2 :])  # ... in small batches
            head = await runtime.store.head()
            await runtime.watch.wait(projection.name, head, 60)
            live = await dump(conn)
            await rebuild(runtime.read_dsn or clean_db, runtime.store, projection, batch_size=500)
            assert await dump(conn) == live
            assert len(live[0]) == 9 and len(live[1]) > 20
        finally:
            await runner.stop()
            await conn.close()
