"""Resumable feeds: a feed resumed after N changes (target: 10,000 within 1 s), against
`eventgraph serve` in its own process on a fresh database, driven by a light Node.js client
in its own process (`bench/node/feed-resume.mjs`, on `ws`).

The client registers one product, places `--history` H orders as other customers (8 of
them, taking turns; none by default), notes the position P0 after them, places N orders as
one customer over HTTP (`--concurrency` requests in flight) and waits until the read model
holds them. Then, for `--rounds` rounds (the order of the figures rotating):
`orders(after: P0)` as staff and `myOrders(after: P0)` as that customer, each timed from
`subscribe` being sent to the N-th distinct order view (and to the first); beside the
baselines measured in the same run: the same N orders read with `orders(first: 100, after:
cursor)` over HTTP, page after page (staff: the N newest; the customer: all of theirs), and
the `events(after: P0)` subscription catching up the 2N events the orders appended. The
history is there to show what a resume's cost follows: the changes after P0, not the size
of the tables (H orders, 2H events before P0 that no feed sends).

    (cd bench/node && npm ci)
    uv run python -m bench.feed_resume [--orders 10000] [--history 0] [--rounds 3] \
        [--concurrency 32]

Prints the client's JSON lines, then one JSON line of medians and ratios.

The orders are placed on one server, which is then stopped, and everything is measured on a
second server started on the same database: a feed resumed after a restart, the case
resumable feeds exist for, and figures that do not share the cores with the first server's
projectors finishing the burst. (The first version of this bench needed the second server
for another reason: the projectors stalled for minutes after the burst, a cached plan of
the event store's log read; that was fixed in cf6d687, and one server would do now.) Any
session the first server left on the database is terminated before the second starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.common import fresh_database, machine, median, server

NODE = Path(__file__).parent / "node"
SECRET = "bench-feed-secret-" + "x" * 32
EVENTGRAPH = str(Path(sys.executable).parent / "eventgraph")
"""The `eventgraph` command of this environment (what `uv run eventgraph` runs)."""

FEEDS = ("staffFeed", "customerFeed")
BASELINES = ("staffPaged", "customerPaged", "eventsFeed")
HISTORY_CUSTOMERS = 8
"""The other customers who place the history before P0, taking turns."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(sub: str, role: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [EVENTGRAPH, "token", "--sub", sub, "--role", role],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@contextmanager
def serve(database_url: str) -> Iterator[tuple[str, int, dict[str, str]]]:
    """`eventgraph serve --port P` on `database_url`: (its URL, its pid, its environment)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="eventgraph-feed-") as tmp:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "EVENTGRAPH_JWT_SECRET": SECRET,
            "EVENTGRAPH_DATA_DIR": tmp,
            # 32 requests of one customer in flight while preparing: no fair-use caps
            "EVENTGRAPH_MAX_OPERATIONS_PER_USER": "0",
            "EVENTGRAPH_MAX_CONNECTIONS_PER_IP": "0",
        }
        with open(os.path.join(tmp, "server.log"), "wb") as log:
            process = subprocess.Popen(
                [EVENTGRAPH, "serve", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError("the server exited: " + Path(log.name).read_text()[-2000:])
                time.sleep(0.1)
            else:
                raise RuntimeError("the server did not start")
            yield url, process.pid, env
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def client(mode: str, base: str, env: dict[str, str], *args: str) -> list[dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(NODE / "feed-resume.mjs"),
        f"mode={mode}",
        f"url={base}",
        f"staff={token('bench-staff', 'staff', env)}",
        f"customer={token('bench-customer', 'customer', env)}",
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    results: list[dict[str, object]] = []
    async for line in process.stdout:
        print(line.decode().rstrip(), flush=True)
        results.append(json.loads(line))
    if await process.wait() != 0:
        raise RuntimeError(f"the client failed ({process.returncode})")
    return results


async def end_sessions(server_url: str, database: str) -> int:
    """Terminate what the first server left on `database` (see the module's doc)."""
    admin = await asyncpg.connect(server_url)
    try:
        return len(
            await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        )
    finally:
        await admin.close()


async def run(orders: int, history: int, rounds: int, concurrency: int) -> list[dict[str, object]]:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with serve(url) as (base, pid, env):
                others = ",".join(
                    token(f"bench-history-{i}", "customer", env)
                    for i in range(HISTORY_CUSTOMERS if history else 0)
                )
                prepared = await client(
                    "prepare",
                    base,
                    env,
                    f"orders={orders}",
                    f"history={history}",
                    f"others={others}",
                    f"concurrency={concurrency}",
                    f"serverPid={pid}",
                )
            ended = await end_sessions(server_url, urlsplit(url).path.lstrip("/"))
            print(json.dumps({"phase": "restart", "sessionsEnded": ended}), flush=True)
            p0, head = prepared[-1]["p0"], prepared[-1]["head"]
            with serve(url) as (base, pid, env):
                measured = await client(
                    "measure",
                    base,
                    env,
                    f"orders={orders}",
                    f"p0={p0}",
                    f"head={head}",
                    f"rounds={rounds}",
                    f"serverPid={pid}",
                )
            return prepared + measured


def summary(results: list[dict[str, object]], orders: int, history: int) -> dict[str, object]:
    def of(name: str, field: str) -> float:
        return median([float(r[field]) for r in results if r["phase"] == name])  # type: ignore[arg-type]

    out: dict[str, object] = {"orders": orders, "history": history}
    for name in FEEDS + BASELINES:
        out[name] = {"firstMs": of(name, "firstMs"), "totalMs": of(name, "totalMs")}
    for feed, baseline in (("staffFeed", "staffPaged"), ("customerFeed", "customerPaged")):
        out[f"{feed}/{baseline}"] = round(of(feed, "totalMs") / of(baseline, "totalMs"), 2)
        out[f"{feed}/eventsFeed"] = round(of(feed, "totalMs") / of("eventsFeed", "totalMs"), 2)
        out[f"{feed} met 1 s"] = of(feed, "totalMs") <= 1000
    for name in FEEDS:
        ok = all(
            r["distinct"] == orders and r["views"] == orders and r["increasing"]
            for r in results
            if r["phase"] == name
        )
        out[f"{name} {orders} distinct, strictly increasing"] = ok
    for name in ("staffPaged", "customerPaged"):
        ok = all(r["distinct"] == orders == r["afterP0"] for r in results if r["phase"] == name)
        out[f"{name} {orders} distinct, all after P0"] = ok
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument(
        "--history", type=int, default=0, help="orders placed by other customers before P0"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    results = asyncio.run(run(args.orders, args.history, args.rounds, args.concurrency))
    medians = summary(results, args.orders, args.history)
    print(json.dumps({"phase": "medians", **medians}), flush=True)


if __name__ == "__main__":
    main()
