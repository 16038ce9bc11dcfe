"""Shared set-up for benchmarks: a fresh database on DATABASE_URL's server, or on the
embedded PostgreSQL when it is unset."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from eventstore.migrate import migrate


@contextlib.contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from eventgraph.database import embedded_postgres

    with (
        tempfile.TemporaryDirectory(prefix="eventgraph-bench-") as tmp,
        embedded_postgres(Path(tmp)) as embedded,
    ):
        yield embedded


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"eventgraph_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    try:
        yield url
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


async def rate(workers: int, seconds: float, op: Callable[[int], Awaitable[int]]) -> float:
    """Run `op(worker)` in a loop from `workers` tasks for `seconds`; return units/s, where
    each call returns how many units it did."""
    import asyncio

    deadline = time.perf_counter() + seconds
    done = [0] * workers

    async def loop(w: int) -> None:
        while time.perf_counter() < deadline:
            done[w] += await op(w)

    start = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(workers)))
    return sum(done) / (time.perf_counter() - start)


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_by_command() -> dict[str, float]:
    """CPU seconds used so far by every process on the machine, summed per command name."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        k: after.get(k, 0.0) - before.get(k, 0.0)
        for k in after
        if after.get(k, 0.0) - before.get(k, 0.0) > 0.05
    }
