"""Catch-up of the sales read model on the projection kit (projections/sales.py) against the
hand-written SQL it replaced (frozen below as `HandWrittenSales`, the code of 08494ef): a log
of order events over a catalogue, appended through the event store, then `rebuild` of the
sales projection from position 0, the two alternating, several rounds in one run. Each
rebuild's tables are checked to hold the same figures. Prints JSON: events/s (wall clock,
as `bench.catchup`), and the bench process's CPU seconds per rebuild (the Python side, where
the two differ most; steadier than the wall clock on a busy machine).

    uv run python -m bench.catchup_sales [--events 100000] [--skus 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import random
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import asyncpg
import orjson

from bench.catchup import append_history
from bench.common import fresh_database, machine, server
from domain import order
from domain.aggregate import DomainEvent
from domain.codec import decode
from domain.order import OrderLine
from eventgraph.runtime import open_runtime, shop_upcasters
from eventstore.events import RecordedEvent
from eventstore.store import EventStore
from projections.base import Projection
from projections.rebuild import rebuild
from projections.sales import SalesProjection
from projections.tables import add_column

ORDER_EVENTS = {
    "OrderPlaced",
    "PaymentProcessed",
    "OrderShipped",
    "OrderCancelled",
    "PaymentRefunded",
    "OrderExpired",
}
RELEASING = ("OrderCancelled", "OrderExpired")


def hand_evolve(
    totals: dict[str, Any],
    order_lines: dict[str, list[dict[str, Any]]],
    events: Sequence[tuple[DomainEvent, int]],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
    """The evolve of the hand-written sales projection, as it was."""
    new_orders: dict[str, list[dict[str, Any]]] = {}
    sold: dict[str, list[Any]] = {}

    def count_lines(lines: list[dict[str, Any]], sign: int, position: int) -> None:
        for line in lines:
            entry = sold.setdefault(line["sku"], [0, Decimal(0), position])
            entry[0] += sign * line["quantity"]
            entry[1] += sign * Decimal(line["unitPrice"]) * line["quantity"]
            entry[2] = position

    for event, position in events:
        match event:
            case order.OrderPlaced():
                totals["orders_placed"] += 1
                lines = [line.as_json() for line in event.lines]
                new_orders[event.order_id] = order_lines[event.order_id] = lines
                count_lines(lines, +1, position)
            case order.PaymentProcessed():
                totals["orders_paid"] += 1
                totals["revenue"] += event.amount
            case order.OrderShipped():
                totals["orders_shipped"] += 1
            case order.OrderCancelled() | order.OrderExpired():
                totals[
                    "orders_cancelled"
                    if isinstance(event, order.OrderCancelled)
                    else "orders_expired"
                ] += 1
                if event.order_id not in order_lines:
                    raise ValueError(f"{type(event).__name__} at {position}: unknown order")
                count_lines(order_lines[event.order_id], -1, position)
            case order.PaymentRefunded():
                totals["revenue"] -= event.amount
        totals["position"] = position
    return new_orders, sold


class HandWrittenSales:
    """The sales projection before the kit, unchanged but for its name in this file."""

    name: ClassVar[str] = "sales"
    version: ClassVar[int] = 1
    views: ClassVar[tuple[str, ...]] = ("sales_totals", "sales_products")

    def create_tables(self, schema: str) -> str:
        return f"""
        CREATE TABLE {schema}.sales_totals (
            id integer PRIMARY KEY CHECK (id = 1),
            orders_placed integer NOT NULL, orders_paid integer NOT NULL,
            orders_shipped integer NOT NULL, orders_cancelled integer NOT NULL,
            revenue numeric NOT NULL, position bigint NOT NULL,
            orders_expired integer NOT NULL DEFAULT 0
        );
        INSERT INTO {schema}.sales_totals VALUES (1, 0, 0, 0, 0, 0, 0, 0);
        CREATE TABLE {schema}.sales_products (
            sku text PRIMARY KEY, units_sold integer NOT NULL, revenue numeric NOT NULL,
            position bigint NOT NULL
        );
        CREATE INDEX ON {schema}.sales_products (units_sold DESC, sku);
        CREATE TABLE {schema}.sales_orders (order_id text PRIMARY KEY, lines jsonb NOT NULL);
        """

    def create_indexes(self, schema: str) -> str:
        return add_column(schema, "sales_totals", "orders_expired", "integer NOT NULL DEFAULT 0")

    async def apply(
        self, conn: asyncpg.Connection, schema: str, events: Sequence[RecordedEvent]
    ) -> None:
        relevant = [e for e in events if e.type in ORDER_EVENTS]
        if not relevant:
            return
        totals = dict(
            await conn.fetchrow(f"SELECT * FROM {schema}.sales_totals WHERE id = 1 FOR UPDATE")
            or {}
        )
        relevant = [e for e in relevant if e.position > totals["position"]]
        if not relevant:
            return
        cancelled_ids = [e.data["orderId"] for e in relevant if e.type in RELEASING]
        order_lines: dict[str, list[dict[str, Any]]] = {
            r["order_id"]: r["lines"]
            for r in await conn.fetch(
                f"SELECT order_id, lines FROM {schema}.sales_orders WHERE order_id = any($1)",
                cancelled_ids,
            )
        }
        events_at = [(decode(r.type, r.data, r.occurred_at), r.position) for r in relevant]
        new_orders, sold = hand_evolve(totals, order_lines, events_at)

        await conn.execute(
            f"""UPDATE {schema}.sales_totals SET orders_placed = $1, orders_paid = $2,
                   orders_shipped = $3, orders_cancelled = $4, revenue = $5, position = $6,
                   orders_expired = $7
                WHERE id = 1""",
            totals["orders_placed"],
            totals["orders_paid"],
            totals["orders_shipped"],
            totals["orders_cancelled"],
            totals["revenue"],
            totals["position"],
            totals["orders_expired"],
        )
        if new_orders:
            await conn.execute(
                f"INSERT INTO {schema}.sales_orders"
                " SELECT * FROM unnest($1::text[], $2::text[]::jsonb[])",
                list(new_orders),
                [orjson.dumps(lines).decode() for lines in new_orders.values()],
            )
        if sold:
            await conn.execute(
                f"""INSERT INTO {schema}.sales_products AS p (sku, units_sold, revenue, position)
                    SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[], $4::bigint[])
                    ON CONFLICT (sku) DO UPDATE SET units_sold = p.units_sold + excluded.units_sold,
                        revenue = p.revenue + excluded.revenue, position = excluded.position""",
                list(sold),
                [v[0] for v in sold.values()],
                [v[1] for v in sold.values()],
                [v[2] for v in sold.values()],
            )


def order_history(count: int, skus: int, seed: int = 1) -> list[tuple[str, DomainEvent]]:
    """About `count` order events: each order placed (1 to 3 lines), and some 200 orders
    later paid and shipped (50%), paid, cancelled and refunded (15%), cancelled (15%),
    expired (10%), or left placed."""
    rng = random.Random(seed)
    now = datetime(2026, 12, 5, tzinfo=UTC)
    catalogue = [f"SKU-{i}" for i in range(skus)]
    price = {sku: Decimal(rng.randint(100, 5000)) / 100 for sku in catalogue}
    history: list[tuple[str, DomainEvent]] = []
    open_orders: collections.deque[tuple[str, str, Decimal]] = collections.deque()
    n = 0
    while len(history) < count:
        n += 1
        oid = f"00000000-0000-4000-8000-{n:012d}"
        stream = order.stream_id(oid)
        picked = rng.sample(catalogue, rng.randint(1, 3))
        lines = tuple(OrderLine(s, rng.randint(1, 3), price[s]) for s in picked)
        total = sum((x.line_total for x in lines), Decimal("0.00"))
        placed = order.OrderPlaced(oid, f"c{n % 500}", lines, total, now, now + timedelta(hours=1))
        history.append((stream, placed))
        open_orders.append((stream, oid, total))
        if len(open_orders) < 200:
            continue
        stream, oid, total = open_orders.popleft()
        fate = rng.random()
        if fate < 0.65:
            history.append((stream, order.PaymentProcessed(oid, total, total, now)))
        if fate < 0.5:
            history.append((stream, order.OrderShipped(oid, now)))
        elif fate < 0.8:
            history.append((stream, order.OrderCancelled(oid, "bench", "bench", now)))
            if fate < 0.65:
                history.append((stream, order.PaymentRefunded(oid, total, now)))
        elif fate < 0.9:
            expires = now + timedelta(hours=1)
            history.append((stream, order.OrderExpired(oid, expires, now)))
    return history


async def figures(pool: asyncpg.Pool) -> list[list[dict[str, Any]]]:
    return [
        [dict(r) for r in await pool.fetch("SELECT * FROM readmodel.sales_totals")],
        [dict(r) for r in await pool.fetch("SELECT * FROM readmodel.sales_products ORDER BY sku")],
    ]


async def main(events: int, skus: int, rounds: int, batch: int) -> None:
    history = order_history(events, skus)
    written = len(history)
    with server() as server_url:
        async with fresh_database(server_url) as url:
            started = time.perf_counter()
            await append_history(url, history)
            loaded = time.perf_counter() - started
            del history  # a projector does not hold the log in memory (nor collect it)
            async with open_runtime(url, run_projectors=False) as runtime:
                store = EventStore(runtime.pool, shop_upcasters())
                contenders: dict[str, Projection] = {
                    "hand-written": HandWrittenSales(),
                    "kit": SalesProjection(),
                }
                rates: dict[str, list[float]] = {name: [] for name in contenders}
                cpu: dict[str, list[float]] = {name: [] for name in contenders}
                seen: dict[str, Any] = {}
                for _ in range(rounds):
                    for name, projection in contenders.items():
                        gc.collect()
                        began, began_cpu = time.perf_counter(), time.process_time()
                        done = await rebuild(url, store, projection, batch_size=batch)
                        rates[name].append(done.done / (time.perf_counter() - began))
                        cpu[name].append(time.process_time() - began_cpu)
                        seen[name] = await figures(runtime.pool)
                assert seen["kit"] == seen["hand-written"], "the two disagree"
    medians = {name: statistics.median(r) for name, r in rates.items()}
    print(
        json.dumps(
            {
                "events": written,
                "skus": skus,
                "batch_size": batch,
                "load_seconds": round(loaded, 1),
                "events_per_second": {n: [round(r) for r in rs] for n, rs in rates.items()},
                "median": {n: round(m) for n, m in medians.items()},
                "kit_over_hand_written": round(medians["kit"] / medians["hand-written"], 3),
                "python_cpu_seconds": {n: [round(c, 2) for c in cs] for n, cs in cpu.items()},
                "python_cpu_kit_over_hand_written": round(
                    statistics.median(cpu["kit"]) / statistics.median(cpu["hand-written"]), 3
                ),
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--skus", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.skus, args.rounds, args.batch))
