"""Order deadlines (issue 20), two figures, each beside its baseline in the same run:

* `throughput`: placeOrder/s over HTTP (wrk, 16 connections, one line on one of 100
  products: bench/wrk.py's client and script) against a server whose every order gets a
  timer (EVENTGRAPH_PAYMENT_WINDOW_SECONDS=1800) and against one with deadlines off (=0),
  each on a fresh database, rounds alternating which goes first. Target: on / off >= 0.95.
* `storm`: 10,000 orders whose deadlines fall on the same instant, placed beforehand by an
  in-process `Shop` with a fixed clock (a separate process from the server, on the same
  database, as tests/integration/test_reactions.py does), fired by the server's
  order-expiry reaction from that instant until none is pending and every one is EXPIRED in
  the read model. Meanwhile a light Node client (bench/node/steady.mjs) holds a few hundred
  subscribers on other products' views and times the live delivery of a steady stream of
  unrelated orders, from the mutation being sent; its p99 during the storm is compared
  with the quiet windows of the same run. Targets: all fired within 10 s, and the storm's
  p99 at most twice the quiet one.

    (cd bench/node && npm ci)   # and wrk (Debian's package)
    uv run python -m bench.deadlines throughput [--seconds 10] [--rounds 5]
    uv run python -m bench.deadlines storm [--orders 10000] [--rate 2000] [--fire-batch 200]
                                           [--concurrency 32]

`--rate`, `--fire-batch` and `--concurrency` set ReactionRunner's limits in the server (this
module's `create` wraps bench.app's factory and changes the runner's defaults), to find the
values that meet both storm targets; unset, the runner's own defaults apply. Each command
prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from application.auth import mint_token
from application.commands import Policy
from application.orders import PlaceOrder
from application.products import RegisterProduct
from application.reactions import ReactionRunner
from bench.common import cpu_by_command, fresh_database, machine, server
from bench.live import raise_open_files
from bench.server import PIDS, SECRET, running_server
from bench.wrk import PLACE_LUA, PRODUCTS, REGISTER, wrk
from domain.values import Actor
from eventgraph.runtime import open_runtime

NODE = Path(__file__).parent / "node"
FACTORY = "bench.deadlines:create"
LIMITS = ("rate", "fire_batch", "concurrency")
"""ReactionRunner's keyword arguments a run may set, as BENCH_REACTION_<NAME> in the server."""
STORM_BUYER = "storm-buyer"


def create() -> Starlette:
    """bench.app's application, with ReactionRunner's defaults for `LIMITS` taken from
    BENCH_REACTION_RATE, _FIRE_BATCH and _CONCURRENCY where set (uvicorn's factory)."""
    from bench import app

    defaults = ReactionRunner.__init__.__kwdefaults__
    assert defaults is not None
    for name in LIMITS:
        value = os.environ.get(f"BENCH_REACTION_{name.upper()}")
        if value:
            defaults[name] = type(defaults[name])(value)
    return app.create()


def note(message: str) -> None:
    """Progress, on standard error (standard output carries the figures)."""
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far, over all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(n) for n in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Usage:
    """Cores used since the last `mark`: by the server process, by every `postgres`
    process on the machine (other people's included, on a shared machine) and by the whole
    machine."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mark()

    def _now(self) -> tuple[float, float, float, float]:
        return (
            time.monotonic(),
            cpu_seconds(self.pid),
            cpu_by_command().get("postgres", 0.0),
            machine_busy_seconds(),
        )

    def mark(self) -> None:
        self._start = self._now()

    def cores(self) -> dict[str, float]:
        now = self._now()
        wall = now[0] - self._start[0]
        server, postgres, machine = ((now[i] - self._start[i]) / wall for i in (1, 2, 3))
        return {
            "server": round(server, 2),
            "postgres": round(postgres, 2),
            "machine": round(machine, 2),
        }


# ---- throughput -------------------------------------------------------------------------


async def register_products(base: str, prefix: str, count: int) -> None:
    """bench/wrk.py's products (`Q-0`..), which its placeOrder script orders from."""
    staff = mint_token(SECRET, "bench", "staff")
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(count):
            response = await http.post(
                base + "/graphql",
                json={"query": REGISTER, "variables": {"s": f"{prefix}-{i}"}},
                headers={"Authorization": f"Bearer {staff}"},
            )
            assert not response.json().get("errors"), response.text


async def caught_up(url: str, seconds: float = 60) -> dict[str, int]:
    """Wait until the order-expiry reaction has followed the log to its head; then the
    orders and timers it left."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + seconds
        while True:
            head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.events")
            seen = await conn.fetchval(
                "SELECT position FROM eventgraph.reactions WHERE name = 'order-expiry'"
            )
            if seen is not None and seen >= head:
                break
            assert time.monotonic() < deadline, "the reaction did not catch up"
            await asyncio.sleep(0.2)
        orders = await conn.fetchval(
            "SELECT count(*) FROM eventgraph.events WHERE type = 'OrderPlaced'"
        )
        timers = await conn.fetchval(
            "SELECT count(*) FROM eventgraph.timers WHERE reaction = 'order-expiry'"
        )
        return {"orders": orders, "timers": timers}
    finally:
        await conn.close()


async def throughput_once(
    server_url: str, window: int, seconds: float, connections: int
) -> dict[str, Any]:
    async with fresh_database(server_url) as url:
        with running_server(url, FACTORY, EVENTGRAPH_PAYMENT_WINDOW_SECONDS=str(window)) as base:
            await register_products(base, "Q", PRODUCTS)
            customer = mint_token(SECRET, "bench-buyer", "customer")
            script = PLACE_LUA % {"n": PRODUCTS, "hot": "false", "token": customer}
            await asyncio.to_thread(wrk, base, script, connections, 2)  # warm-up
            pid = PIDS[base]
            cpu = cpu_seconds(pid)
            figure = await asyncio.to_thread(wrk, base, script, connections, seconds)
            cpu = cpu_seconds(pid) - cpu
            left = await caught_up(url)
    return {
        "window": window,
        "placeOrderPerSec": round(figure, 1),
        "serverCpuMsPerOrder": round(cpu / (figure * seconds) * 1000, 3),
        **left,
    }


async def throughput(seconds: float, rounds: int, connections: int) -> None:
    on: list[float] = []
    off: list[float] = []
    with server() as server_url:
        for r in range(rounds):
            # A B, then B A: drift over the run falls on both sides alike.
            for window in (1800, 0) if r % 2 == 0 else (0, 1800):
                run = await throughput_once(server_url, window, seconds, connections)
                (on if window else off).append(run["placeOrderPerSec"])
                print(json.dumps({"round": r + 1, **run}), flush=True)
    med = statistics.median
    print(
        json.dumps(
            {
                "machine": machine(),
                "seconds": seconds,
                "connections": connections,
                "deadlinesOnPerSec": on,
                "deadlinesOffPerSec": off,
                "medianOn": med(on),
                "medianOff": med(off),
                "ratio": round(med(on) / med(off), 3),
                "roundRatios": [round(a / b, 3) for a, b in zip(on, off, strict=True)],
                "target": 0.95,
            }
        )
    )


# ---- storm ------------------------------------------------------------------------------


@dataclass
class Window:
    name: str
    start: float
    end: float
    """Wall-clock seconds: an order sent in [start, end) counts for this window."""
    cores: dict[str, float]


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def window_figures(orders: list[list[Any]], window: Window) -> dict[str, Any]:
    inside = [o for o in orders if window.start * 1000 <= o[0] < window.end * 1000]
    deliveries = [ms for o in inside for ms in o[3]]
    mutations = [o[1] for o in inside if o[1] is not None]
    p99 = quantile(deliveries, 0.99)
    return {
        "seconds": round(window.end - window.start, 2),
        "cores": window.cores,
        "orders": len(inside),
        "unanswered": len(inside) - len(mutations),
        "deliveries": len(deliveries),
        "missed": sum(o[2] for o in inside),
        "deliveryP50": quantile(deliveries, 0.5),
        "deliveryP99": p99,
        "deliveryMax": max(deliveries, default=None),
        "mutationP99": quantile(mutations, 0.99),
    }


def scrape(base: str) -> dict[str, float]:
    """The server's metrics the storm is explained by, as `name{labels}` -> value."""
    wanted = {
        "eventgraph_command_duration_seconds",
        "eventgraph_command_group_size",
        "eventgraph_commands",
        "eventgraph_append_conflicts",
        "eventgraph_command_retries",
        "eventgraph_timers_fired",
        "eventgraph_timers_failed",
        "eventgraph_projection_batch_duration_seconds",
    }
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(base + "/metrics", timeout=30).text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count", "_total")):
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def explain(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What the server did during the storm, from its metrics."""

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    def mean(name: str, labels: str) -> float | None:
        count = delta(f"{name}_count{{{labels}}}")
        return round(delta(f"{name}_sum{{{labels}}}") / count, 4) if count else None

    return {
        "expireOrderCommands": delta("eventgraph_commands_total{command=ExpireOrder,outcome=ok}"),
        "expireOrderMeanSeconds": mean(
            "eventgraph_command_duration_seconds", "command=ExpireOrder"
        ),
        "placeOrderMeanSeconds": mean("eventgraph_command_duration_seconds", "command=PlaceOrder"),
        "groupSizeMean": mean("eventgraph_command_group_size", ""),
        "groups": delta("eventgraph_command_group_size_count{}"),
        "appendConflicts": sum(
            delta(k) for k in after if k.startswith("eventgraph_append_conflicts_total")
        ),
        "commandRetries": delta("eventgraph_command_retries_total{}"),
        "timersFired": {
            k.split("outcome=")[1].rstrip("}"): delta(k)
            for k in after
            if k.startswith("eventgraph_timers_fired_total") and "order-expiry" in k
        },
        "timersFailed": delta("eventgraph_timers_failed_total{reaction=order-expiry}"),
        "projectionBatchMeanSeconds": {
            k.split("projection=")[1].rstrip("}"): round(
                delta(k) / delta(k.replace("_sum", "_count")), 4
            )
            for k in after
            if k.startswith("eventgraph_projection_batch_duration_seconds_sum")
            and delta(k.replace("_sum", "_count"))
        },
    }


async def place_storm(
    url: str, orders: int, products: int, due: datetime, concurrency: int = 32
) -> float:
    """`orders` orders (one line on one of the storm's products each) whose deadlines are
    all `due`: a shop on a fixed clock, `due` minus the window, in this process, beside the
    running server. Returns the seconds it took."""
    window = timedelta(seconds=60)
    placed_at = due - window
    policy = Policy(payment_window=window, low_stock_threshold=0)
    buyer = Actor(STORM_BUYER, "customer")
    staff = Actor("storm-staff", "staff")
    started = time.monotonic()
    async with open_runtime(
        url, run_projectors=False, max_pool=8, policy=policy, clock=lambda: placed_at
    ) as runtime:
        shop = runtime.shop
        assert shop is not None
        skus = [f"STORM-{i}" for i in range(products)]
        for sku in skus:
            await shop.handle(RegisterProduct(staff, sku, "Storm", "1.00", 10**9))
        todo: Iterator[int] = iter(range(orders))

        async def worker() -> None:
            for n in todo:
                await shop.handle(PlaceOrder(buyer, [(skus[n % products], 1)]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def storm_progress(conn: asyncpg.Connection, due: datetime) -> tuple[int, int]:
    """Storm timers still pending, storm orders EXPIRED in the read model."""
    pending = await conn.fetchval(
        "SELECT count(*) FROM eventgraph.timers WHERE reaction = 'order-expiry' AND due_at <= $1",
        due,
    )
    expired = await conn.fetchval(
        "SELECT count(*) FROM readmodel.orders WHERE customer_id = $1 AND status = 'EXPIRED'",
        STORM_BUYER,
    )
    return int(pending), int(expired)


async def storm_once(args: argparse.Namespace) -> dict[str, Any]:
    limits = {
        f"BENCH_REACTION_{name.upper()}": str(getattr(args, name))
        for name in LIMITS
        if getattr(args, name) is not None
    }
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(
                url, FACTORY, EVENTGRAPH_PAYMENT_WINDOW_SECONDS="1800", **limits
            ) as base:
                return await storm_on(args, url, base)


async def storm_on(args: argparse.Namespace, url: str, base: str) -> dict[str, Any]:
    usage = Usage(PIDS[base])
    client = await asyncio.create_subprocess_exec(
        "node",
        str(NODE / "steady.mjs"),
        f"url={base}",
        f"staff={mint_token(SECRET, 'bench', 'staff')}",
        f"customer={mint_token(SECRET, 'viewer', 'customer')}",
        f"subscribers={args.subscribers}",
        f"views={args.views}",
        f"rate={args.stream_rate}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=2**28,
    )
    assert client.stdout is not None and client.stdin is not None
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read() -> None:
        assert client.stdout is not None
        try:
            async for line in client.stdout:
                await messages.put(json.loads(line))
        finally:
            await messages.put({"phase": "ended early"})

    reader = asyncio.create_task(read())
    result: dict[str, Any] = {}
    windows: list[Window] = []
    conn = await asyncpg.connect(url)
    try:
        subscribed = await messages.get()
        assert subscribed["phase"] == "subscribed", subscribed
        result["failedConnections"] = subscribed["failed"]
        note(f"{args.subscribers} subscribers, {subscribed['failed']} failed")
        await messages.get()  # streaming
        await asyncio.sleep(2)  # settled
        # Quiet window 1: the stream alone.
        start = time.time()
        usage.mark()
        await asyncio.sleep(args.quiet)
        windows.append(Window("quiet before", start, time.time(), usage.cores()))
        # The storm's orders, all due at one instant `lead` seconds from now (excluded
        # from every window: this process places them, on the same cores).
        due = datetime.now(UTC) + timedelta(seconds=args.lead)
        due_at = due.timestamp()
        note(f"placing {args.orders} orders due at {due:%H:%M:%S}")
        placing = await place_storm(url, args.orders, args.products, due)
        note(f"placed in {placing:.1f} s")
        deadline = time.monotonic() + 120
        while True:  # the server's reaction has a timer, and the read model an order, each
            pending, _ = await storm_progress(conn, due)
            placed = await conn.fetchval(
                "SELECT count(*) FROM readmodel.orders WHERE customer_id = $1", STORM_BUYER
            )
            if pending == args.orders and placed == args.orders:
                break
            assert time.monotonic() < deadline, (pending, placed)
            await asyncio.sleep(0.2)
        note("the server has every timer and order")
        await asyncio.sleep(2)  # settled
        # Quiet window 2: from then until the deadline.
        start = time.time()
        if due_at - start < 5:
            raise RuntimeError(
                f"placing took {placing:.1f} s: only {due_at - start:.1f} s were left before"
                " the deadline; raise --lead"
            )
        usage.mark()
        # It ends 1 s before the deadline: an order sent later may be delivered in the storm.
        await asyncio.sleep(due_at - 1 - start)
        windows.append(Window("quiet after placing", start, time.time(), usage.cores()))
        before = await asyncio.to_thread(scrape, base)
        await asyncio.sleep(max(0.0, due_at - time.time()))
        note("due")
        # The storm: until no storm timer is pending and every storm order is EXPIRED.
        profiler = (
            await asyncio.create_subprocess_exec(
                "py-spy",
                "record",
                "--pid",
                str(usage.pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                args.profile,
                "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            if args.profile
            else None
        )
        usage.mark()
        fired_at: float | None = None
        expired_at: float | None = None
        trace: list[tuple[float, int, int]] = []
        while expired_at is None:
            pending, expired = await storm_progress(conn, due)
            now = time.time()
            trace.append((round(now - due_at, 2), pending, expired))
            if pending == 0 and fired_at is None:
                fired_at = now
            if expired == args.orders:
                expired_at = now
            elif now - due_at > args.give_up:
                break
            await asyncio.sleep(0.1)
        end = time.time()
        windows.append(Window("storm", due_at, end, usage.cores()))
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            await profiler.wait()
        after = await asyncio.to_thread(scrape, base)
        note(f"storm over after {end - due_at:.1f} s")
        span = await conn.fetchrow(
            "SELECT count(*) AS n, min(recorded_at) AS first, max(recorded_at) AS last"
            " FROM eventgraph.events WHERE type = 'OrderExpired'"
        )
        assert span is not None
        # Quiet window 3: after the storm, as long as the storm lasted (at least 5 s).
        await asyncio.sleep(2)
        start = time.time()
        usage.mark()
        await asyncio.sleep(max(5.0, end - due_at))
        windows.append(Window("quiet after the storm", start, time.time(), usage.cores()))
        client.stdin.write(b"stop\n")
        await client.stdin.drain()
        note("the stream is told to stop")
        done = await messages.get()
        assert done["phase"] == "done", done
    finally:
        await conn.close()
        if client.returncode is None:
            try:
                await asyncio.wait_for(client.wait(), 60)
            except TimeoutError:
                client.kill()
        reader.cancel()
    figures = {w.name: window_figures(done["orders"], w) for w in windows}
    quiet_p99 = [
        f["deliveryP99"]
        for name, f in figures.items()
        if name != "storm" and f["deliveryP99"] is not None
    ]
    storm_p99 = figures["storm"]["deliveryP99"]
    usual = statistics.median(quiet_p99)
    return {
        "machine": machine(),
        "orders": args.orders,
        "storm_products": args.products,
        "limits": {name: getattr(args, name) for name in LIMITS},
        "subscribers": args.subscribers,
        "views": args.views,
        "streamRate": args.stream_rate,
        "placingSeconds": round(placing, 1),
        "firedWithinSeconds": round(fired_at - due_at, 2) if fired_at else None,
        "expiredInReadModelWithinSeconds": round(expired_at - due_at, 2) if expired_at else None,
        "orderExpiredEvents": span["n"],
        "firstToLastExpirySeconds": round((span["last"] - span["first"]).total_seconds(), 2)
        if span["n"]
        else None,
        "firstExpiryAfterDueSeconds": round(span["first"].timestamp() - due_at, 3)
        if span["n"]
        else None,
        "windows": figures,
        "usualP99": usual,
        "stormP99OverUsual": round(storm_p99 / usual, 2) if storm_p99 and usual else None,
        "server": explain(before, after),
        "outOfOrder": done["outOfOrder"],
        "closedEarly": done["closedEarly"],
        "trace": trace[:: max(1, len(trace) // 40)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands_ = parser.add_subparsers(dest="command", required=True)
    t = commands_.add_parser("throughput", help="placeOrder/s with deadlines on against off")
    t.add_argument("--seconds", type=float, default=10)
    t.add_argument("--rounds", type=int, default=5)
    t.add_argument("--connections", type=int, default=16)
    s = commands_.add_parser("storm", help="10,000 timers due at once, beside live delivery")
    s.add_argument("--orders", type=int, default=10_000)
    s.add_argument("--products", type=int, default=100, help="the storm orders' products")
    s.add_argument("--subscribers", type=int, default=300)
    s.add_argument("--views", type=int, default=30, help="the stream's products")
    s.add_argument("--stream-rate", type=float, default=50, help="the stream's orders/s")
    s.add_argument("--quiet", type=float, default=15, help="seconds of the first quiet window")
    s.add_argument("--lead", type=float, default=60, help="from placing to the deadline")
    s.add_argument("--give-up", type=float, default=120, help="seconds the storm may last")
    s.add_argument("--runs", type=int, default=1)
    s.add_argument("--profile", help="py-spy's samples of the server in the storm, to this file")
    for name in LIMITS:
        s.add_argument(f"--{name.replace('_', '-')}", type=float if name == "rate" else int)
    args = parser.parse_args()
    if args.command == "throughput":
        asyncio.run(throughput(args.seconds, args.rounds, args.connections))
    else:
        raise_open_files()
        for _ in range(args.runs):
            print(json.dumps(asyncio.run(storm_once(args))), flush=True)


if __name__ == "__main__":
    main()
