"""Personal data (issue 22), two figures, each beside its baseline in the same run:

* `throughput`: placeOrder/s over HTTP (wrk, 1 thread, 16 connections, one line on one of
  100 products) with a shipping address and an email on every order, against the same
  mutation without them, each on a fresh database and a fresh server (`bench.app` under
  uvicorn, as `eventgraph serve` runs it, with EVENTGRAPH_MASTER_KEY set), rounds
  alternating which goes first. The orders come from a fixed pool of `--customers`
  customers (1,000), each with a token of their own, cycled: a customer's data key is made
  on their first order (the 2 s warm-up places more orders than there are customers), so
  in the measured window nearly every order seals under a key that already exists (one
  share-locked key read in the append's transaction, plus AES-GCM of two fields). Target:
  with / without >= 0.9.
* `catchup`: a log of about `--events` order events (bench.catchup_sales's
  `order_history`: orders placed, paid, shipped, cancelled, refunded, expired, 500
  customers), appended through the event store in this process into two fresh databases:
  one where every OrderPlaced carries a shipping address and an email (sealed under its
  customer's key), one without. Then `rebuild` of the `orders` read model from position 0
  on each, alternately, `--rounds` rounds; each rebuild opens the log through a store with a
  cold key cache (as a new projector process would). Target: with / without >= 0.8.

    uv run python -m bench.personal throughput [--seconds 10] [--rounds 4] [--customers 1000]
    uv run python -m bench.personal catchup [--events 100000] [--rounds 4] [--profile]

`--profile` adds, after the timed rounds, one profiled rebuild of each log (cProfile, so
slower than the timed ones) and the CPU seconds it spent in the personal data path: key
lookups, parsing key ids, base64, AES-GCM, opening the envelopes. wrk is Debian's
package. Each command prints one JSON line per run, then a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from application.auth import mint_token
from bench.catchup_sales import order_history
from bench.common import fresh_database, machine, server
from bench.deadlines import caught_up, cpu_seconds, note, register_products
from bench.server import PIDS, SECRET, running_server
from bench.wrk import PRODUCTS, wrk
from domain import order
from domain.aggregate import DomainEvent
from domain.codec import encode, forgetting_events, personal_fields
from domain.contact import ShippingAddress
from eventgraph.runtime import create_pool, shop_upcasters
from eventstore.events import ANY, NewEvent
from eventstore.personal import (
    MasterKey,
    PersonalData,
    PersonalFields,
    PersonalKeys,
    new_master_key_text,
)
from eventstore.store import EventStore
from projections.orders import OrdersProjection
from projections.rebuild import rebuild

MUTATION = (
    "mutation($s: String!, $a: ShippingAddressInput, $e: String) {"
    " placeOrder(lines: [{sku: $s, quantity: 1}], shippingAddress: $a, email: $e)"
    " { position } }"
)

PLACE_LUA = """-- wrk: placeOrder, one line on one of %(n)d products in turn, customers cycled
local tokens = {%(tokens)s}
local n = 0
request = function()
  n = n + 1
  local c = n %% #tokens
  local body = '{"query":%(query)s,"variables":{"s":"Q-' .. (n %% %(n)d) .. '"'
  if %(personal)s then
    body = body .. ',"a":{"name":"Customer ' .. c .. '","line1":"' .. c
      .. ' Long Road","line2":"Flat 2","city":"Bristol","postalCode":"BS1 4DJ",'
      .. '"country":"GB"},"e":"customer' .. c .. '@example.org"'
  end
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[c + 1]}, body .. '}}')
end
"""


def place_script(tokens: Sequence[str], personal: bool) -> str:
    return PLACE_LUA % {
        "n": PRODUCTS,
        "tokens": ",".join(f'"{t}"' for t in tokens),
        "query": json.dumps(MUTATION),
        "personal": "true" if personal else "false",
    }


# ---- throughput -------------------------------------------------------------------------


async def sealed_orders(url: str) -> dict[str, int]:
    """OrderPlaced events, those with a sealed email, and data keys, in the log."""
    conn = await asyncpg.connect(url)
    try:
        orders, sealed = await conn.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE data->'email' ? '$personal')"
            " FROM eventgraph.events WHERE type = 'OrderPlaced'"
        )
        keys = await conn.fetchval("SELECT count(*) FROM eventgraph.personal_keys")
        return {"orders": orders, "sealedOrders": sealed, "keys": keys}
    finally:
        await conn.close()


async def throughput_once(
    server_url: str, personal: bool, seconds: float, connections: int, customers: int
) -> dict[str, Any]:
    async with fresh_database(server_url) as url:
        with running_server(url, EVENTGRAPH_MASTER_KEY=new_master_key_text()) as base:
            await register_products(base, "Q", PRODUCTS)
            tokens = [mint_token(SECRET, f"pd-buyer-{i}", "customer") for i in range(customers)]
            script = place_script(tokens, personal)
            await asyncio.to_thread(wrk, base, script, connections, 2)  # warm-up
            pid = PIDS[base]
            cpu = cpu_seconds(pid)
            figure = await asyncio.to_thread(wrk, base, script, connections, seconds)
            cpu = cpu_seconds(pid) - cpu
            await caught_up(url)
            sealed = await sealed_orders(url)
    if personal:
        assert sealed["sealedOrders"] == sealed["orders"], sealed
    else:
        assert sealed["sealedOrders"] == 0, sealed
    return {
        "personal": personal,
        "placeOrderPerSec": round(figure, 1),
        "serverCpuMsPerOrder": round(cpu / (figure * seconds) * 1000, 3),
        **sealed,
    }


async def throughput(seconds: float, rounds: int, connections: int, customers: int) -> None:
    runs: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    with server() as server_url:
        for r in range(rounds):
            # A B, then B A: drift over the run falls on both sides alike.
            for personal in (True, False) if r % 2 == 0 else (False, True):
                note(f"round {r + 1}, personal={personal}")
                run = await throughput_once(server_url, personal, seconds, connections, customers)
                runs[personal].append(run["placeOrderPerSec"])
                cpu[personal].append(run["serverCpuMsPerOrder"])
                print(json.dumps({"round": r + 1, **run}), flush=True)
    med = statistics.median
    print(
        json.dumps(
            {
                "machine": machine(),
                "seconds": seconds,
                "connections": connections,
                "customers": customers,
                "withPerSec": runs[True],
                "withoutPerSec": runs[False],
                "medianWith": med(runs[True]),
                "medianWithout": med(runs[False]),
                "ratio": round(med(runs[True]) / med(runs[False]), 3),
                "roundRatios": [
                    round(a / b, 3) for a, b in zip(runs[True], runs[False], strict=True)
                ],
                "serverCpuMsPerOrderWith": med(cpu[True]),
                "serverCpuMsPerOrderWithout": med(cpu[False]),
                "target": 0.9,
            }
        ),
        flush=True,
    )


# ---- catch-up ---------------------------------------------------------------------------


def with_personal_data(history: list[tuple[str, DomainEvent]]) -> list[tuple[str, DomainEvent]]:
    """`history` with a shipping address and an email on every OrderPlaced."""
    out = []
    for stream, event in history:
        if isinstance(event, order.OrderPlaced):
            c = event.customer_id
            address = ShippingAddress(
                f"Customer {c}", f"{c} Long Road", "Flat 2", "Bristol", "BS1 4DJ", "GB"
            )
            event = replace(event, shipping_address=address, email=f"{c}@example.org")
        out.append((stream, event))
    return out


def personal_data(master: MasterKey) -> PersonalData:
    """The store's personal data, as `open_runtime` makes it, with a cold key cache."""
    return PersonalData(
        PersonalKeys([master]),
        {t: PersonalFields(subject, fields) for t, (subject, fields) in personal_fields().items()},
        forgetting_events(),
    )


async def append_history(
    pool: asyncpg.Pool, master: MasterKey, history: Sequence[tuple[str, DomainEvent]]
) -> None:
    """bench.catchup's `append_history` (900 events to an append, no version checks),
    through a store that seals personal fields, as the product's does."""
    store = EventStore(pool, shop_upcasters(), None, personal_data(master))
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


PERSONAL_PATH = {
    "keyLookups": ("personal.py", "for_read"),
    "keyIdParsing": ("personal.py", "envelope_key"),
    "base64": ("personal.py", "_unb64"),
    "aesGcmDecrypt": ("~", "'decrypt' of 'cryptography"),
    "openEnvelope": ("personal.py", "open_envelope"),
    "openFields": ("personal.py", "open_fields"),
    "openData": ("personal.py", "open"),
}
"""(file, function) of the personal data path, matched as the end of the file name and a
part of the function's (C methods have the file "~")."""


def profile_summary(profile: cProfile.Profile) -> dict[str, float]:
    """Cumulative CPU seconds of the personal data path's functions, and the total."""
    stats = pstats.Stats(profile)
    found = {name: 0.0 for name in PERSONAL_PATH}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        for name, (file, func) in PERSONAL_PATH.items():
            by_name = function == func or (func.startswith("'") and func in function)
            if filename.endswith(file) and by_name:
                found[name] += row[3]
    found["total"] = stats.total_tt  # type: ignore[attr-defined]
    return {k: round(v, 3) for k, v in found.items()}


async def catchup(events: int, rounds: int, batch: int, profile: bool) -> None:
    plain = order_history(events, 100)
    logs = {True: with_personal_data(plain), False: plain}
    master = MasterKey.from_text(new_master_key_text())
    projection = OrdersProjection()
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    profiles: dict[str, dict[str, float]] = {}
    with server() as server_url:
        async with fresh_database(server_url) as url_with, fresh_database(server_url) as url_no:
            urls = {True: url_with, False: url_no}
            pools = {p: await create_pool(urls[p], max_size=4) for p in urls}
            try:
                loaded = {}
                for personal in (True, False):
                    began = time.perf_counter()
                    await append_history(pools[personal], master, logs[personal])
                    loaded[personal] = round(time.perf_counter() - began, 1)
                    note(f"appended personal={personal} in {loaded[personal]} s")
                written = len(plain)
                del plain, logs
                for r in range(rounds):
                    for personal in (True, False) if r % 2 == 0 else (False, True):
                        store = EventStore(
                            pools[personal], shop_upcasters(), None, personal_data(master)
                        )
                        gc.collect()
                        began, began_cpu = time.perf_counter(), time.process_time()
                        done = await rebuild(urls[personal], store, projection, batch_size=batch)
                        rate = done.done / (time.perf_counter() - began)
                        rates[personal].append(rate)
                        cpu[personal].append(time.process_time() - began_cpu)
                        print(
                            json.dumps(
                                {
                                    "round": r + 1,
                                    "personal": personal,
                                    "events": done.done,
                                    "eventsPerSec": round(rate),
                                    "pythonCpuSeconds": round(cpu[personal][-1], 2),
                                }
                            ),
                            flush=True,
                        )
                for personal in (True, False):
                    conn = await asyncpg.connect(urls[personal])
                    emails = await conn.fetchval("SELECT count(email) FROM readmodel.orders")
                    orders = await conn.fetchval("SELECT count(*) FROM readmodel.orders")
                    await conn.close()
                    assert emails == (orders if personal else 0), (personal, emails, orders)
                if profile:
                    for personal in (True, False):
                        store = EventStore(
                            pools[personal], shop_upcasters(), None, personal_data(master)
                        )
                        profiler = cProfile.Profile()
                        profiler.enable()
                        await rebuild(urls[personal], store, projection, batch_size=batch)
                        profiler.disable()
                        profiles["with" if personal else "without"] = profile_summary(profiler)
            finally:
                for pool in pools.values():
                    await pool.close()
    med = statistics.median
    print(
        json.dumps(
            {
                "machine": machine(),
                "events": written,
                "batchSize": batch,
                "appendSeconds": {"with": loaded[True], "without": loaded[False]},
                "withPerSec": [round(x) for x in rates[True]],
                "withoutPerSec": [round(x) for x in rates[False]],
                "medianWith": round(med(rates[True])),
                "medianWithout": round(med(rates[False])),
                "ratio": round(med(rates[True]) / med(rates[False]), 3),
                "pythonCpuSecondsWith": [round(c, 2) for c in cpu[True]],
                "pythonCpuSecondsWithout": [round(c, 2) for c in cpu[False]],
                "pythonCpuRatio": round(med(cpu[True]) / med(cpu[False]), 3),
                "target": 0.8,
                **({"profileCpuSeconds": profiles} if profiles else {}),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("throughput")
    t.add_argument("--seconds", type=float, default=10)
    t.add_argument("--rounds", type=int, default=4)
    t.add_argument("--connections", type=int, default=16)
    t.add_argument("--customers", type=int, default=1000)
    c = commands.add_parser("catchup")
    c.add_argument("--events", type=int, default=100_000)
    c.add_argument("--rounds", type=int, default=4)
    c.add_argument("--batch", type=int, default=5_000)
    c.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.command == "throughput":
        asyncio.run(throughput(args.seconds, args.rounds, args.connections, args.customers))
    else:
        asyncio.run(catchup(args.events, args.rounds, args.batch, args.profile))
