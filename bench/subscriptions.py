"""Live views at scale, on one server process with the clients in this process:

(b) time until the last of --clients subscribers of one product receives an update, from the
    mutation's response, beside a plain Starlette WebSocket broadcast of a same-sized message
    to the same number of clients, in the same run;
(c) server memory per idle subscription (RSS growth over the clients' connections).

    uv run python -m bench.subscriptions [--clients 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import websockets

from application.auth import mint_token
from bench.common import fresh_database, machine, server
from bench.http import Connection
from bench.server import SECRET, running_server

SUB = (
    "subscription($sku: String!) { product(sku: $sku) { sku onHand reserved available position } }"
)
REGISTER = """mutation { registerProduct(sku: "LIVE-1", name: "Live", unitPrice: "1.00",
  initialStock: 10) { product { sku } } }"""
RESTOCK = 'mutation { restockProduct(sku: "LIVE-1", quantity: 1) { position } }'


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def server_pid(port: int) -> int:
    import subprocess

    out = subprocess.run(
        ["pgrep", "-f", f"bench.app:create --port {port}"], capture_output=True, text=True
    )
    return int(out.stdout.split()[0])


async def open_subscribers(base: str, n: int, token: str) -> list[object]:
    sockets = []
    for i in range(n):
        ws = await websockets.connect(
            base.replace("http", "ws") + "/graphql",
            subprotocols=["graphql-transport-ws"],
            max_queue=None,
        )
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "1",
                    "payload": {"query": SUB, "variables": {"sku": "LIVE-1"}},
                }
            )
        )
        sockets.append(ws)
        if i % 500 == 499:
            await asyncio.sleep(0)
    for ws in sockets:
        await ws.recv()  # the first view
    return sockets


async def main(clients: int) -> None:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(url) as base:
                port = int(base.rsplit(":", 1)[1])
                pid = server_pid(port)
                staff = mint_token(SECRET, "bench", "staff")
                http = await Connection.open(base)
                headers = {"Authorization": f"Bearer {staff}"}
                await http.post_json("/graphql", {"query": REGISTER}, headers)
                await asyncio.sleep(0.5)
                idle_before = rss_kib(pid)
                subscribers = await open_subscribers(base, clients, staff)
                await asyncio.sleep(1)
                per_sub = (rss_kib(pid) - idle_before) / clients

                async def last_receive(sockets: list[object]) -> float:
                    async def one(ws: object) -> float:
                        await ws.recv()  # type: ignore[attr-defined]
                        return time.perf_counter()

                    return max(await asyncio.gather(*(one(ws) for ws in sockets)))

                live_times = []
                for _ in range(3):
                    waiting = asyncio.ensure_future(last_receive(subscribers))
                    await asyncio.sleep(0.2)
                    http = await Connection.open(base)  # idle keep-alives are closed
                    sent = time.perf_counter()  # from the request, as the plain one below
                    await http.post_json("/graphql", {"query": RESTOCK}, headers)
                    live_times.append(await waiting - sent)
                    await asyncio.sleep(0.5)
                for ws in subscribers:
                    await ws.close()  # type: ignore[attr-defined]

                plain = []
                for _ in range(clients):
                    plain.append(
                        await websockets.connect(
                            base.replace("http", "ws") + "/bench/ws", max_queue=None
                        )
                    )
                await asyncio.sleep(1)
                message = json.dumps(
                    {
                        "type": "next",
                        "id": "1",
                        "payload": {
                            "data": {
                                "product": {
                                    "sku": "LIVE-1",
                                    "onHand": 11,
                                    "reserved": 0,
                                    "available": 11,
                                    "position": 2,
                                }
                            }
                        },
                    }
                )
                plain_times = []
                for _ in range(3):
                    waiting = asyncio.ensure_future(last_receive(plain))
                    await asyncio.sleep(0.2)
                    http = await Connection.open(base)
                    started = time.perf_counter()
                    await http.request("POST", "/bench/broadcast", message.encode(), {})
                    plain_times.append(await waiting - started)
                    await asyncio.sleep(0.5)
                for ws in plain:
                    await ws.close()
    live, flat = sorted(live_times)[1], sorted(plain_times)[1]
    print(f"machine: {machine()}; {clients} clients in one process, median of 3")
    print(
        f"(b) last of {clients} subscribers has the new view after {live * 1000:7.1f} ms"
        f"  (runs {[round(t * 1000) for t in live_times]})"
    )
    print(
        f"    plain Starlette broadcast to {clients} clients:  {flat * 1000:7.1f} ms"
        f"  (runs {[round(t * 1000) for t in plain_times]})"
    )
    print(f"    ratio {live / flat:.1f}x (target: within 2x)")
    print(f"(c) server memory per idle subscription: {per_sub:.1f} KiB (target under 50 KB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=int(os.environ.get("CLIENTS", "2000")))
    asyncio.run(main(parser.parse_args().clients))
