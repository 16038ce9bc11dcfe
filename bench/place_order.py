"""placeOrder mutations/s over HTTP from 16 concurrent clients, beside the raw single-event
append rate (16 connections, one event per transaction) measured in the same run.

    uv run python -m bench.place_order [--seconds 5] [--products 100]
"""

from __future__ import annotations

import argparse
import asyncio
import random

import asyncpg

from application.auth import mint_token
from bench.append import DATA, META, RAW_INSERT, RAW_TABLE
from bench.common import cpu_by_command, cpu_delta, fresh_database, machine, rate, server
from bench.http import Connection
from bench.server import SECRET, running_server
from tests.kit.documents import LEAN_PLACE as PLACE
from tests.kit.documents import LEAN_REGISTER as REGISTER

STOCK = 1_000_000_000


async def raw_append_rate(url: str, seconds: float) -> float:
    import uuid
    from datetime import UTC, datetime

    pool = await asyncpg.create_pool(url, min_size=16, max_size=16)
    assert pool is not None
    await pool.execute("DROP TABLE IF EXISTS raw_events")
    await pool.execute(RAW_TABLE)
    versions = [0] * 16

    async def one(w: int) -> int:
        versions[w] += 1
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                RAW_INSERT,
                [uuid.uuid4()],
                [f"w{w}"],
                [versions[w]],
                ["InventoryUpdated"],
                [1],
                [__import__("json").dumps(DATA)],
                [__import__("json").dumps(META)],
                [datetime.now(UTC)],
            )
        return 1

    figure = await rate(16, seconds, one)
    await pool.close()
    return figure


async def place_order_rate(base: str, seconds: float, products: int) -> float:
    staff = {"Authorization": "Bearer " + mint_token(SECRET, "bench-staff", "staff")}
    customers = [
        {"Authorization": "Bearer " + mint_token(SECRET, f"bench-{i}", "customer")}
        for i in range(16)
    ]
    skus = [f"BENCH-{i}" for i in range(products)]
    connections = [await Connection.open(base) for _ in range(16)]
    for sku in skus:
        _, body = await connections[0].post_json(
            "/graphql", {"query": REGISTER, "variables": {"sku": sku, "stock": STOCK}}, staff
        )
        assert not body.get("errors"), body
    failures = 0

    async def one(w: int) -> int:
        nonlocal failures
        status, body = await connections[w].post_json(
            "/graphql", {"query": PLACE, "variables": {"sku": random.choice(skus)}}, customers[w]
        )
        if status != 200 or body.get("errors"):
            failures += 1
            return 0
        return 1

    await rate(16, 1.0, one)  # warm-up
    before = cpu_by_command()
    figure = await rate(16, seconds, one)
    used = cpu_delta(before, cpu_by_command())
    print(
        "CPU seconds per 1,000 orders by process:",
        {k: round(v / (figure * seconds) * 1000, 2) for k, v in used.items()},
    )
    for connection in connections:
        await connection.close()
    if failures:
        print(f"warning: {failures} failed mutations")
    return figure


async def main(seconds: float, products: int) -> None:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            raw = await raw_append_rate(url, seconds)
            with running_server(url) as base:
                placed = await place_order_rate(base, seconds, products)
            raw_after = await raw_append_rate(url, seconds)
    baseline = (raw + raw_after) / 2
    print(f"machine: {machine()}; {seconds}s per figure, 16 concurrent clients")
    print(
        f"raw single-event appends, 16 connections: {raw:8.0f} /s before, {raw_after:8.0f} /s after"
    )
    print(f"placeOrder over HTTP, 16 clients:          {placed:8.0f} /s")
    print(f"ratio: {placed / baseline:.2f} (target 0.2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--products", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.products))
