"""Projection catch-up: rebuild each projection over a log of --events events (a shop's
worth: products, then orders that are placed, paid, shipped or cancelled), in events/s.

    uv run python -m bench.catchup [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from decimal import Decimal

from bench.common import fresh_database, machine, server
from domain import order, product
from domain.aggregate import DomainEvent
from domain.codec import encode
from domain.order import OrderLine
from eventgraph.runtime import create_pool, open_runtime, shop_upcasters
from eventstore.events import ANY, NewEvent
from eventstore.store import EventStore
from projections import all_projections
from projections.rebuild import rebuild


def shop_history(count: int, seed: int = 1) -> list[tuple[str, DomainEvent]]:
    """(stream, event) pairs of a plausible shop, about `count` of them."""
    from datetime import UTC, datetime

    rng = random.Random(seed)
    now = datetime.now(UTC)
    skus = [f"SKU-{i}" for i in range(200)]
    stock = {sku: [1_000_000, 0] for sku in skus}
    price = {sku: Decimal(rng.randint(100, 5000)) / 100 for sku in skus}
    history: list[tuple[str, DomainEvent]] = [
        (product.stream_id(s), product.ProductRegistered(s, s, price[s], 1_000_000, now))
        for s in skus
    ]
    n = 0
    while len(history) < count:
        n += 1
        oid = f"00000000-0000-4000-8000-{n:012d}"
        ostream = order.stream_id(oid)
        lines = tuple(
            OrderLine(s, rng.randint(1, 3), price[s]) for s in rng.sample(skus, rng.randint(1, 3))
        )
        total = sum((x.line_total for x in lines), Decimal("0.00"))
        history.append((ostream, order.OrderPlaced(oid, f"c{n % 500}", lines, total, now)))
        for x in lines:
            stock[x.sku][1] += x.quantity
            history.append(
                (
                    product.stream_id(x.sku),
                    product.InventoryUpdated(
                        x.sku, product.StockChange.RESERVATION, x.quantity, *stock[x.sku], oid, now
                    ),
                )
            )
        fate = rng.random()
        if fate < 0.7:
            history.append((ostream, order.PaymentProcessed(oid, total, total, now)))
        if fate < 0.5:
            history.append((ostream, order.OrderShipped(oid, now)))
            change = product.StockChange.SHIPMENT
            for x in lines:
                stock[x.sku][0] -= x.quantity
                stock[x.sku][1] -= x.quantity
                history.append(
                    (
                        product.stream_id(x.sku),
                        product.InventoryUpdated(
                            x.sku, change, x.quantity, *stock[x.sku], oid, now
                        ),
                    )
                )
        elif fate < 0.8:
            history.append((ostream, order.OrderCancelled(oid, "bench", "bench", now)))
            if fate < 0.7:
                history.append((ostream, order.PaymentRefunded(oid, total, now)))
            for x in lines:
                stock[x.sku][1] -= x.quantity
                history.append(
                    (
                        product.stream_id(x.sku),
                        product.InventoryUpdated(
                            x.sku, product.StockChange.RELEASE, x.quantity, *stock[x.sku], oid, now
                        ),
                    )
                )
    return history


async def append_history(url: str, history: Sequence[tuple[str, DomainEvent]]) -> None:
    """Append (stream, event) pairs in order, 900 events to an append, with no version
    checks: a log for a catch-up to read, written as fast as the store takes it."""
    pool = await create_pool(url, max_size=4)
    store = EventStore(pool)
    batch: dict[str, tuple[int, list[NewEvent]]] = {}
    size = 0
    for stream, event in history:
        event_type, version, data = encode(event)
        batch.setdefault(stream, (ANY, []))[1].append(NewEvent(event_type, data, version))
        size += 1
        if size >= 900:
            await store.append(batch)
            batch, size = {}, 0
    if batch:
        await store.append(batch)
    await pool.close()


async def load(url: str, count: int) -> int:
    history = shop_history(count)
    await append_history(url, history)
    return len(history)


async def main(events: int) -> None:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            started = time.perf_counter()
            written = await load(url, events)
            print(f"wrote {written:,} events in {time.perf_counter() - started:.1f}s")
            async with open_runtime(url, run_projectors=False) as runtime:
                store = EventStore(runtime.pool, shop_upcasters())
                for projection in all_projections():
                    started = time.perf_counter()
                    done = await rebuild(url, store, projection)
                    elapsed = time.perf_counter() - started
                    print(
                        f"{projection.name:10s} rebuilt {done.done:,} events in {elapsed:5.1f}s:"
                        f" {done.done / elapsed:9,.0f} events/s (target 20,000)"
                    )
    print(f"machine: {machine()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    asyncio.run(main(parser.parse_args().events))
