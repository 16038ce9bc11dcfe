"""Append throughput of the event log beside raw asyncpg INSERTs of the same rows, same run.

    uv run python -m bench.append [--seconds 3] [--rounds 3]

Uses DATABASE_URL's server (a fresh database on it) or, unset, the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime

import asyncpg

from bench.common import fresh_database, machine, median, rate, server
from eventstore.events import NO_STREAM, NewEvent
from eventstore.store import EventStore, init_connection

RAW_TABLE = """
CREATE TABLE raw_events (
    position bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL,
    stream_version integer NOT NULL, type text NOT NULL, schema_version integer NOT NULL,
    data jsonb NOT NULL, metadata jsonb NOT NULL, occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream_id, stream_version))
"""
RAW_INSERT = """
INSERT INTO raw_events (event_id, stream_id, stream_version, type, schema_version, data,
                        metadata, occurred_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::int[], $6::jsonb[],
                     $7::jsonb[], $8::timestamptz[])
"""
DATA = {"sku": "SKU-1", "quantity": 3, "unitPrice": "19.99", "reason": "restock"}
META = {"correlationId": str(uuid.uuid4()), "actor": "bench"}


def new_events(n: int) -> list[NewEvent]:
    return [NewEvent("InventoryUpdated", DATA, metadata=META) for _ in range(n)]


async def measure(url: str, seconds: float) -> dict[str, float]:
    pool = await asyncpg.create_pool(url, min_size=16, max_size=16, init=init_connection)
    assert pool is not None
    await pool.execute(RAW_TABLE)
    store = EventStore(pool)
    versions: dict[str, int] = {}

    async def ours(w: int, n: int) -> int:
        key = f"w{w}"
        version = versions.get(key, NO_STREAM)
        result = await store.append({key: (version, new_events(n))})
        versions[key] = result.stream_versions[key]
        return n

    raw_versions: dict[int, int] = {}

    async def raw(w: int, n: int) -> int:
        v = raw_versions.get(w, 0)
        now = datetime.now(UTC)
        args = (
            [uuid.uuid4() for _ in range(n)],
            [f"w{w}"] * n,
            list(range(v + 1, v + n + 1)),
            ["InventoryUpdated"] * n,
            [1] * n,
            [DATA] * n,
            [META] * n,
            [now] * n,
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(RAW_INSERT, *args)
        raw_versions[w] = v + n
        return n

    async def ours_1(w: int) -> int:
        return await ours(w, 1)

    async def raw_1(w: int) -> int:
        return await raw(w, 1)

    async def ours_100(w: int) -> int:
        return await ours(w, 100)

    async def raw_100(w: int) -> int:
        return await raw(w, 100)

    figures = {
        "raw_1conn": await rate(1, seconds, raw_1),
        "ours_1conn": await rate(1, seconds, ours_1),
        "raw_16conn": await rate(16, seconds, raw_1),
        "ours_16conn": await rate(16, seconds, ours_1),
        "raw_batch100": await rate(1, seconds, raw_100),
        "ours_batch100": await rate(1, seconds, ours_100),
    }
    await pool.close()
    return figures


async def main(seconds: float, rounds: int) -> None:
    with server() as server_url:
        results: list[dict[str, float]] = []
        for _ in range(rounds):
            async with fresh_database(server_url) as url:
                results.append(await measure(url, seconds))
    keys = results[0].keys()
    med = {k: median([r[k] for r in results]) for k in keys}
    print(f"machine: {machine()}; {rounds} rounds of {seconds}s, medians")
    for label, ours_key, raw_key in [
        ("single-event appends, 1 connection", "ours_1conn", "raw_1conn"),
        ("single-event appends, 16 connections", "ours_16conn", "raw_16conn"),
        ("100-event batches, 1 connection", "ours_batch100", "raw_batch100"),
    ]:
        print(
            f"{label:40s} eventgraph {med[ours_key]:9.0f} ev/s   raw INSERT {med[raw_key]:9.0f}"
            f" ev/s   ratio {med[ours_key] / med[raw_key]:.2f}"
        )
    print(json.dumps({k: round(v) for k, v in med.items()}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
